"""The live feed on a Redis Cluster: sharded PUB/SUB (``SSUBSCRIBE``), one subscriber
connection per shard master that owns a wanted channel.

A shard channel lives on the master of its slot (its replicas see it too), so this instance
only talks to the shards it needs, and nothing is broadcast over the cluster bus.

Slot moves and failovers: when a master loses a slot (resharding, or ``CLUSTER FAILOVER`` made
it a replica) Redis ends those subscriptions with a pushed ``sunsubscribe``; when a node dies
its connection breaks or goes silent. Either way the shard is marked broken and one owned
supervisor task refreshes the slot map, subscribes every wanted channel on its current
master (with capped backoff while the cluster is down) and then calls ``on_rehomed``: the
node compares every channel's delivered position with history (``Node._on_resubscribed``),
so what was published during the move is filled from history or the clients are told to
recover.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from server.realtime.broker import BrokerUnavailable

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
OnMessage = Callable[[str, bytes], None]
OnRehomed = Callable[[], Coroutine[Any, Any, None]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Shard:
    """One master's subscriber connection and the channels subscribed on it."""

    def __init__(self, name: str, client: Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub: PubSub = client.pubsub()
        self.keys: set[str] = set()
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.broken = False

    def fail_waiters(self, reason: str) -> None:
        for futures in self.waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(BrokerUnavailable(reason))
        self.waiters.clear()

    async def close(self) -> None:
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        self.fail_waiters("shard connection closed")
        for resource in (self.pubsub, self.client):
            try:
                await resource.aclose()
            except (RedisError, OSError):
                pass


class ShardedSubscriber:
    def __init__(
        self,
        cluster: RedisCluster,
        url: str,
        *,
        on_message: OnMessage,
        on_rehomed: OnRehomed,
        idle_ping_seconds: float = 5.0,
    ) -> None:
        self.cluster = cluster
        # the URL's password, username and TLS, for each master's own connection
        self._connect_kwargs: dict[str, Any] = {
            k: v for k, v in parse_url(url).items() if k not in ("host", "port", "db")
        }
        self._on_message = on_message
        self._on_rehomed = on_rehomed
        self.idle_ping_seconds = idle_ping_seconds
        self._wanted: set[str] = set()
        self._shards: dict[str, _Shard] = {}
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._followups: set[asyncio.Task[None]] = set()
        self._closing = False
        self.connected = asyncio.Event()
        self.rehomes = 0

    async def start(self, always: str) -> None:
        """Start with ``always`` (the control channel) wanted; returns once it is subscribed
        or after a bounded wait (the supervisor keeps trying)."""
        self._wanted.add(always)
        self._dirty.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-shards-supervisor")
        try:
            await asyncio.wait_for(self.connected.wait(), 5)
        except TimeoutError:
            log.warning("realtime broker: Redis Cluster not reachable yet, retrying in the background")

    async def stop(self) -> None:
        self._closing = True
        tasks = [t for t in (self._supervisor, *self._followups) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for shard in list(self._shards.values()):
            await asyncio.shield(shard.close())
        self._shards.clear()

    # --- subscriptions ---

    async def subscribe(self, key: str) -> None:
        async with self._lock:
            self._wanted.add(key)
            try:
                await self._subscribe_on_owner(key)
            except (RedisError, OSError, TimeoutError, BrokerUnavailable) as exc:
                self._wanted.discard(key)
                self._mark_dirty()
                raise BrokerUnavailable(f"subscribe failed: {exc}") from exc

    async def unsubscribe(self, key: str) -> None:
        async with self._lock:
            self._wanted.discard(key)
            for shard in self._shards.values():
                if key in shard.keys:
                    shard.keys.discard(key)
                    try:
                        await shard.pubsub.sunsubscribe(key)
                    except (RedisError, OSError):
                        shard.broken = True
                        self._mark_dirty()

    async def _subscribe_on_owner(self, key: str) -> None:
        node = self.cluster.get_node_from_key(key)
        if node is None:
            raise BrokerUnavailable(f"no master serves {key}")
        shard = await self._shard(node.name, node.host, int(node.port))
        if key in shard.keys:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.waiters.setdefault(key, []).append(fut)
        await shard.pubsub.ssubscribe(key)
        await asyncio.wait_for(fut, SUBSCRIBE_TIMEOUT)
        shard.keys.add(key)

    async def _shard(self, name: str, host: str, port: int) -> _Shard:
        shard = self._shards.get(name)
        if shard is not None and not shard.broken:
            return shard
        if shard is not None:
            await shard.close()
        pool = ConnectionPool(host=host, port=port, **self._connect_kwargs)
        shard = _Shard(name, Redis.from_pool(pool))  # the client closes its pool
        await shard.pubsub.connect()
        self._shards[name] = shard
        shard.reader = asyncio.create_task(self._read(shard), name=f"redis-shard-{name}")
        return shard

    # --- readers and the supervisor ---

    def _mark_dirty(self) -> None:
        self.connected.clear()
        self._dirty.set()

    async def _read(self, shard: _Shard) -> None:
        last_seen = time.monotonic()
        try:
            while True:
                message = await shard.pubsub.get_message(timeout=self.idle_ping_seconds)
                now = time.monotonic()
                if message is None:
                    if not shard.keys:  # nothing subscribed: no ping is sent, no silence to judge
                        last_seen = now
                        continue
                    if now - last_seen > 3 * self.idle_ping_seconds:
                        raise ConnectionError("sharded PUB/SUB connection silent")
                    await shard.pubsub.ping()
                    continue
                last_seen = now
                kind = _text(message.get("type"))
                channel = _text(message.get("channel"))
                if kind == "smessage":
                    data = message["data"]
                    self._on_message(channel, data if isinstance(data, bytes) else str(data).encode())
                elif kind == "ssubscribe":
                    for fut in shard.waiters.pop(channel, []):
                        if not fut.done():
                            fut.set_result(None)
                elif kind == "sunsubscribe" and channel in shard.keys:
                    # Redis took it away: the slot moved or this master became a replica
                    log.warning(
                        "realtime broker: shard %s dropped %s (slot moved); re-homing", shard.name, channel
                    )
                    shard.keys.discard(channel)
                    shard.broken = True
                    self._mark_dirty()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if not self._closing:
                log.warning("realtime broker: shard %s connection lost: %s", shard.name, exc)
        shard.broken = True
        shard.fail_waiters("shard connection lost")
        self._mark_dirty()

    async def _supervise(self) -> None:
        attempt = 0
        first = True
        while not self._closing:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                async with self._lock:
                    if first:
                        await self.cluster.initialize()
                    else:
                        await self.cluster.nodes_manager.initialize()  # the new slot map
                    await self._rehome()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, BrokerUnavailable) as exc:
                log.warning("realtime broker: Redis Cluster feed not restored yet: %s", exc)
                self._dirty.set()
                await asyncio.sleep(min(5.0, 0.05 * 2**attempt))
                attempt += 1
                first = False
                continue
            attempt = 0
            self.connected.set()
            if not first:
                self.rehomes += 1
                log.warning("realtime broker: sharded PUB/SUB restored; checking positions")
                task = asyncio.create_task(self._on_rehomed(), name="redis-shards-rehomed")
                self._followups.add(task)
                task.add_done_callback(self._followups.discard)
            first = False

    async def _rehome(self) -> None:
        """Every wanted channel subscribed on its slot's current master; shards no longer
        owning any (or broken) closed."""
        for name, shard in list(self._shards.items()):
            if shard.broken:
                del self._shards[name]
                await shard.close()
        owners: dict[str, str] = {}
        for key in self._wanted:
            node = self.cluster.get_node_from_key(key)
            if node is None:
                raise BrokerUnavailable(f"no master serves {key}")
            owners[key] = node.name
        for name, shard in list(self._shards.items()):
            for key in list(shard.keys):
                if owners.get(key) != name:
                    shard.keys.discard(key)
                    try:
                        await shard.pubsub.sunsubscribe(key)
                    except (RedisError, OSError):
                        shard.broken = True
        for key in self._wanted:
            await self._subscribe_on_owner(key)
        for name, shard in list(self._shards.items()):
            if shard.broken or not shard.keys:
                del self._shards[name]
                await shard.close()
