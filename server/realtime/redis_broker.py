"""Redis broker: history in Redis Streams, live fan-out through PUB/SUB.

Per channel: a stream ``bp:rt:{<channel>}:h`` (entry id ``0-{offset}``, trimmed with
``MAXLEN ~``, expiring after the history TTL) and a meta hash ``bp:rt:{<channel>}:m`` with
the last offset ``s`` and the epoch ``e``. The channel is the hash tag of all its keys (and
of its PUB/SUB channel ``bp:rt:{<channel>}:p`` and presence keys), so on a Redis Cluster a
channel's script and pipelines run in one slot. The meta hash outlives the stream; when it is
lost (expiry, flush, a Redis restart without persistence) the next publish or read makes a
new epoch, so a client's old position is known to be unrecoverable.

Publishing is one Lua script: increment the offset, append, trim, refresh TTLs and
PUBLISH a msgpack ``[offset, epoch, payload]`` to ``bp:rt:{<channel>}:p``. The order on
PUB/SUB is therefore the order of offsets. An event's channels go in one script call on a
single Redis (``publish_many``: one round trip for the four), one per slot on a Cluster.

With ``cluster=True`` (``BUILDPEER_REDIS_CLUSTER``) commands go through redis-py's
``RedisCluster`` and the script ``SPUBLISH``es instead (sharded PUB/SUB: the message stays
in the channel's shard); the live feed is :class:`server.realtime.redis_shards.ShardedSubscriber`
(one connection per shard master, following slot moves and failovers). Control messages
use the shard channel ``bp:rt:{control}``.

One PUB/SUB connection per instance, owned by a reader task. When it breaks, the task
reconnects with capped exponential backoff, resubscribes every channel and calls
``on_resubscribed`` so the node can check its channels' positions (nothing published
while the feed was down goes unnoticed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgpack
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

from server.realtime.broker import (
    BrokerUnavailable,
    OnControl,
    OnPublication,
    OnResubscribed,
    PresenceStats,
    Publication,
    StreamPosition,
)
from server.realtime.redis_shards import ShardedSubscriber
from server.redis_client import connect_cluster

log = logging.getLogger(__name__)

PREFIX = "bp:rt:"
CONTROL_CHANNEL = PREFIX + "control"
CLUSTER_CONTROL_CHANNEL = PREFIX + "{control}"  # a shard channel: every instance reads its shard
META_TTL_SECONDS = 7 * 86400
SUBSCRIBE_TIMEOUT = 5.0
POOL_CONNECTIONS = 100
POOL_WAIT_SECONDS = 5.0

# Publish ARGV[1] to each of the n channels of KEYS (stream and meta hash, in pairs) and to
# its PUB/SUB channel (ARGV[5 + i]) with the command ARGV[6 + n] (for one channel the layout
# of the single-channel script this replaced). On a Cluster all KEYS are in one slot.
_PUBLISH = """
local n = #KEYS / 2
local command = ARGV[6 + n]
local out = {}
for i = 1, n do
  local stream, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('del', stream)
    redis.call('hset', meta, 'e', epoch)
  end
  local offset = redis.call('hincrby', meta, 's', 1)
  redis.call('xadd', stream, 'MAXLEN', '~', ARGV[2], '0-' .. offset, 'p', ARGV[1])
  redis.call('expire', stream, ARGV[3])
  redis.call('expire', meta, ARGV[4])
  redis.call(command, ARGV[5 + i], cmsgpack.pack({offset, epoch, ARGV[1]}))
  out[2 * i - 1] = offset
  out[2 * i] = epoch
end
return out
"""

_HISTORY = """
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 's', 0)
  redis.call('expire', KEYS[2], ARGV[4])
end
local offset = redis.call('hget', KEYS[2], 's') or '0'
local entries = {}
local limit = tonumber(ARGV[2])
if limit ~= 0 then
  local since = tonumber(ARGV[1])
  local low = '-'
  if since >= 0 then low = '0-' .. string.format('%d', since + 1) end
  if ARGV[3] == '1' then
    if limit > 0 then
      entries = redis.call('xrevrange', KEYS[1], '+', low, 'COUNT', limit)
    else
      entries = redis.call('xrevrange', KEYS[1], '+', low)
    end
  else
    if limit > 0 then
      entries = redis.call('xrange', KEYS[1], low, '+', 'COUNT', limit)
    else
      entries = redis.call('xrange', KEYS[1], low, '+')
    end
  end
end
return {offset, epoch, entries}
"""


def _keys(channel: str) -> tuple[str, str, str]:
    tagged = PREFIX + "{" + channel + "}:"
    return tagged + "h", tagged + "m", tagged + "p"


def _channel_of(pubsub_key: str) -> str | None:
    """The broker channel of a PUB/SUB key ``bp:rt:{<channel>}:p``."""
    if pubsub_key.startswith(PREFIX + "{") and pubsub_key.endswith("}:p"):
        return pubsub_key[len(PREFIX) + 1 : -3]
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pack_payload(data: bytes, key: str | None) -> bytes:
    return msgpack.packb({"d": data, "k": key}, use_bin_type=True)


def _unpack_payload(raw: bytes) -> tuple[bytes, str | None]:
    payload = msgpack.unpackb(raw, raw=False)
    return bytes(payload["d"]), payload.get("k")


async def _aclose(resource: Any) -> None:
    await resource.aclose()


def _entry_offset(entry_id: Any) -> int:
    return int(_text(entry_id).split("-", 1)[1])


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        history_size: int,
        history_ttl: int,
        presence_ttl: int = 60,
        idle_ping_seconds: float = 5.0,
        cluster: bool = False,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.presence_ttl = presence_ttl
        self.idle_ping_seconds = idle_ping_seconds
        no_retry = Retry(NoBackoff(), 0)
        # A bounded pool that waits for a free connection: redis-py's default pool fails at
        # once ("Too many connections") past 100 calls in flight, which a reconnect storm of
        # a few hundred clients (history + presence per subscribe) reaches.
        self._pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            retry=no_retry,
            socket_connect_timeout=2,
            socket_timeout=5,
        )
        self.redis: Redis | RedisCluster = Redis(connection_pool=self._pool)
        self._shards: ShardedSubscriber | None = None
        self._control_channel = CONTROL_CHANNEL
        self._publish_command = "publish"
        if cluster:
            # Retries follow a failover (each on a fresh slot map); the live feed, which
            # must notice breaks, is the sharded subscriber below.
            self.redis = connect_cluster(url, retries=3)
            self._shards = ShardedSubscriber(
                self.redis,
                url,
                on_message=self._deliver,
                on_rehomed=self._rehomed,
                idle_ping_seconds=idle_ping_seconds,
            )
            self._control_channel = CLUSTER_CONTROL_CHANNEL
            self._publish_command = "spublish"
        self._publish_script = self.redis.register_script(_PUBLISH)
        self._history_script = self.redis.register_script(_HISTORY)
        self._channels: set[str] = set()  # live subscriptions wanted by this instance
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._followups: set[asyncio.Task[None]] = set()
        self._on_publication: OnPublication | None = None
        self._on_resubscribed: OnResubscribed | None = None
        self._on_control: OnControl | None = None
        self._closing = False
        self.connected = asyncio.Event() if self._shards is None else self._shards.connected
        self.reconnects = 0

    # --- lifecycle ---

    async def start(
        self,
        on_publication: OnPublication,
        on_resubscribed: OnResubscribed,
        on_control: OnControl | None = None,
    ) -> None:
        self._on_publication = on_publication
        self._on_resubscribed = on_resubscribed
        self._on_control = on_control
        if self._shards is not None:
            await self._shards.start(self._control_channel)
            return
        self._reader = asyncio.create_task(self._read_forever(), name="redis-broker-pubsub")
        try:  # start serving even when Redis is down; the reader keeps trying
            await asyncio.wait_for(self.connected.wait(), 5)
        except TimeoutError:
            log.warning("realtime broker: Redis not reachable yet, retrying in the background")

    async def stop(self) -> None:
        self._closing = True
        tasks = [t for t in (self._reader, *self._followups) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._shards is not None:
            await self._shards.stop()
        await asyncio.shield(_aclose(self.redis))
        await asyncio.shield(self._pool.disconnect())

    # --- the live feed ---

    async def _read_forever(self) -> None:
        attempt = 0
        first = True
        while not self._closing:
            client = Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)
            pubsub = client.pubsub()
            try:
                async with self._lock:
                    await pubsub.subscribe(CONTROL_CHANNEL)
                    wanted = [_keys(c)[2] for c in self._channels]
                    if wanted:
                        await pubsub.subscribe(*wanted)
                    self._pubsub = pubsub
                self.connected.set()
                attempt = 0
                if not first:
                    self.reconnects += 1
                    log.warning("realtime broker: PUB/SUB reconnected; checking positions")
                    self._spawn_resubscribed()
                first = False
                await self._pump(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not self._closing:
                    log.warning("realtime broker: PUB/SUB connection lost: %s", exc)
                    # Redis went away: the command pool's idle connections are dead too.
                    await self._drop_idle_connections()
            finally:
                self._pubsub = None
                self.connected.clear()
                self._fail_waiters()
                await asyncio.shield(self._close_quietly(pubsub, client))
            if self._closing:
                return
            await asyncio.sleep(min(5.0, 0.05 * 2**attempt))
            attempt += 1

    async def _pump(self, pubsub: PubSub) -> None:
        last_seen = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=self.idle_ping_seconds)
            now = time.monotonic()
            if message is None:
                if now - last_seen > 3 * self.idle_ping_seconds:
                    raise ConnectionError("PUB/SUB connection silent")
                await pubsub.ping()
                continue
            last_seen = now
            kind = message.get("type")
            if kind == "message":
                self._deliver(_text(message["channel"]), message["data"])
            elif kind == "subscribe":
                for fut in self._waiters.pop(_text(message["channel"]), []):
                    if not fut.done():
                        fut.set_result(None)

    def _deliver(self, channel_key: str, data: Any) -> None:
        if channel_key == self._control_channel:
            if self._on_control is not None:
                self._on_control(data if isinstance(data, bytes) else str(data).encode())
            return
        channel = _channel_of(channel_key)
        if channel is None or self._on_publication is None:
            return
        try:
            offset, epoch, payload = msgpack.unpackb(data, raw=True)
            data, key = _unpack_payload(payload)
            pub = Publication(int(offset), _text(epoch), data, key)
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            log.error("realtime broker: undecodable publication on %s: %s", channel_key, exc)
            return
        self._on_publication(channel, pub)

    async def _rehomed(self) -> None:
        """The sharded feed moved (failover, slot move, lost connection) and is back."""
        self.reconnects += 1
        if self._on_resubscribed is not None:
            await self._on_resubscribed()

    def _spawn_resubscribed(self) -> None:
        if self._on_resubscribed is None:
            return
        task = asyncio.create_task(self._on_resubscribed(), name="redis-broker-resubscribed")
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    def _fail_waiters(self) -> None:
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(BrokerUnavailable("PUB/SUB connection lost"))
        self._waiters.clear()

    @staticmethod
    async def _close_quietly(pubsub: PubSub, client: Redis) -> None:
        for resource in (pubsub, client):
            try:
                await _aclose(resource)
            except (RedisError, OSError):
                pass

    async def subscribe(self, channel: str) -> None:
        key = _keys(channel)[2]
        if self._shards is not None:
            await self._shards.subscribe(key)
            return
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                raise BrokerUnavailable("PUB/SUB connection is down")
            self._channels.add(channel)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append(fut)
            try:
                await pubsub.subscribe(key)
                await asyncio.wait_for(fut, SUBSCRIBE_TIMEOUT)
            except (RedisError, OSError, TimeoutError, BrokerUnavailable) as exc:
                self._channels.discard(channel)
                raise BrokerUnavailable(f"subscribe failed: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        if self._shards is not None:
            await self._shards.unsubscribe(_keys(channel)[2])
            return
        async with self._lock:
            self._channels.discard(channel)
            pubsub = self._pubsub
            if pubsub is not None:
                try:
                    await pubsub.unsubscribe(_keys(channel)[2])
                except (RedisError, OSError):
                    pass  # the reader reconnects without it

    async def publish_control(self, data: bytes) -> None:
        try:
            if self.cluster:
                await self.redis.spublish(self._control_channel, data)
            else:
                await self.redis.publish(self._control_channel, data)
        except (RedisError, OSError) as exc:
            await self._drop_idle_connections()
            raise BrokerUnavailable(f"control publish failed: {exc}") from exc

    # --- history ---

    async def publish(self, channel: str, data: bytes, *, key: str | None = None) -> StreamPosition:
        return (await self.publish_many([channel], data, key=key))[0]

    async def publish_many(
        self, channels: Sequence[str], data: bytes, *, key: str | None = None
    ) -> list[StreamPosition]:
        """One script call for all ``channels`` on a single Redis; on a Cluster one per slot
        (each channel is its own hash tag), the calls concurrent."""
        payload = _pack_payload(data, key)
        if not self.cluster or len(channels) == 1:
            return await self._publish_in_slot(list(channels), payload)
        by_slot: dict[int, list[int]] = {}
        for index, channel in enumerate(channels):
            by_slot.setdefault(key_slot(_keys(channel)[0].encode()), []).append(index)
        groups = list(by_slot.values())
        results = await asyncio.gather(
            *(self._publish_in_slot([channels[i] for i in group], payload) for group in groups),
            return_exceptions=True,
        )
        positions: list[StreamPosition | None] = [None] * len(channels)
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            for index, position in zip(group, result, strict=True):
                positions[index] = position
        return [p for p in positions if p is not None]

    async def _publish_in_slot(self, channels: list[str], payload: bytes) -> list[StreamPosition]:
        keys: list[str] = []
        pubsub: list[str] = []
        for channel in channels:
            stream, meta, pub = _keys(channel)
            keys += (stream, meta)
            pubsub.append(pub)
        try:
            reply = await self._publish_script(
                keys=keys,
                args=[
                    payload,
                    self.history_size,
                    self.history_ttl,
                    max(META_TTL_SECONDS, self.history_ttl),
                    os.urandom(4).hex(),  # the epoch of a stream that has none
                    *pubsub,
                    self._publish_command,
                ],
            )
        except (RedisError, OSError) as exc:
            await self._drop_idle_connections()  # the next publish starts on a fresh connection
            raise BrokerUnavailable(f"publish failed: {exc}") from exc
        return [StreamPosition(int(reply[i]), _text(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def _drop_idle_connections(self) -> None:
        if self.cluster:
            return  # the Cluster client replaces broken node connections itself
        try:
            await self._pool.disconnect(inuse_connections=False)
        except (RedisError, OSError) as exc:
            log.debug("realtime broker: dropping idle connections failed: %s", exc)

    async def history(
        self, channel: str, *, since: int | None, limit: int, reverse: bool = False
    ) -> tuple[list[Publication], StreamPosition]:
        stream, meta, _ = _keys(channel)
        try:
            offset, epoch, entries = await self._history_script(
                keys=[stream, meta],
                args=[
                    -1 if since is None else since,
                    limit,
                    "1" if reverse else "0",
                    max(META_TTL_SECONDS, self.history_ttl),
                    uuid.uuid4().hex[:8],
                ],
            )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"history failed: {exc}") from exc
        epoch_text = _text(epoch)
        pubs = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            data, key = _unpack_payload(values[b"p"])
            pubs.append(Publication(_entry_offset(entry_id), epoch_text, data, key))
        return pubs, StreamPosition(int(offset), epoch_text)

    # --- presence ---

    def _presence_keys(self, channel: str) -> tuple[str, str]:
        tagged = PREFIX + "{" + channel + "}:"  # one slot: the presence pipelines are transactions
        return tagged + "pz", tagged + "ph"

    async def add_presence(self, channel: str, client_id: str, user_id: str) -> None:
        zkey, hkey = self._presence_keys(channel)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(zkey, {client_id: time.time() + self.presence_ttl})
                pipe.hset(hkey, client_id, user_id)
                pipe.expire(zkey, self.presence_ttl * 2)
                pipe.expire(hkey, self.presence_ttl * 2)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"presence failed: {exc}") from exc

    async def remove_presence(self, channel: str, client_id: str) -> None:
        zkey, hkey = self._presence_keys(channel)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(zkey, client_id)
                pipe.hdel(hkey, client_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"presence failed: {exc}") from exc

    async def presence_stats(self, channel: str) -> PresenceStats:
        zkey, hkey = self._presence_keys(channel)
        try:
            expired = await self.redis.zrangebyscore(zkey, "-inf", time.time())
            if expired:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(zkey, *expired)
                    pipe.hdel(hkey, *expired)
                    await pipe.execute()
            users = await self.redis.hvals(hkey)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"presence failed: {exc}") from exc
        return PresenceStats(len(users), len(set(users)))
