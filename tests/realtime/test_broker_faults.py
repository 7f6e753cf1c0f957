"""Faults of the broker's Redis under subscribed stock ``centrifuge`` Python SDK clients
while publications continue (issue 11, "No silent gaps"):

* Redis frozen (SIGSTOP) for longer than the broker's timeouts, then resumed (SIGCONT);
* the broker's PUB/SUB connection killed (``CLIENT KILL TYPE pubsub``) between two
  publications.

Every publication the API acknowledged reaches every client exactly once and in order,
live or recovered. Publications the API did not acknowledge (they timed out while Redis
was frozen) may still have been stored by Redis when it resumed: clients may see them too,
in their place in the stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import centrifuge
import orjson
import pytest
from redis.asyncio import Redis

from devstack.process import free_port
from devstack.redis import EmbeddedRedis
from server.realtime.channels import parse_channel
from server.realtime.redis_broker import SUBSCRIBE_TIMEOUT, RedisBroker
from server.realtime.redis_broker import _keys as redis_keys
from server.realtime.redis_broker import _pack_payload as pack_payload
from tests.realtime.conftest import RealtimeServer

CLIENTS = 3
BEFORE = 5
AFTER = 10
IDLE_PING = 5.0  # RedisBroker's default idle_ping_seconds
# Every publication is a state of the same upload, like the progress the API publishes: the
# key that lets a slow client's queue keep only the newest state.
UPLOAD_KEY = os.environ.get("UPLOAD_KEY", "upload-1") or None
PACE = 0.1  # seconds between publications while the fault lasts
FREEZE = float(os.environ.get("FREEZE", 3 * IDLE_PING + 2))


@dataclass
class Received:
    offsets: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    subscribed: list[Any] = field(default_factory=list)
    unsubscribed: list[tuple[int, str]] = field(default_factory=list)


class Recorder(centrifuge.SubscriptionEventHandler):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        self.received.offsets.append(ctx.pub.offset)
        self.received.numbers.append(ctx.pub.data["n"])

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        self.received.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx: centrifuge.UnsubscribedContext) -> None:
        self.received.unsubscribed.append((ctx.code, ctx.reason))


async def _wait(
    predicate: Callable[[], bool], what: str, detail: Callable[[], Any], limit: float = 60
) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - the SDK's handlers set no event we could wait on
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), limit)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}: {detail()}")


async def _run_fault(
    server: RealtimeServer,
    tenant: Any,
    fault: Callable[[], Coroutine[Any, Any, None]],
    *,
    fault_window: float,
) -> list[Received]:
    channel = f"project:{tenant.projects[0]}"
    received = [Received() for _ in range(CLIENTS)]
    clients = []
    for r in received:
        client = centrifuge.Client(server.ws_url, token=tenant.tokens["admin"], max_reconnect_delay=1.0)
        sub = client.new_subscription(
            channel, events=Recorder(r), recoverable=True, positioned=True, max_resubscribe_delay=1.0
        )
        await sub.subscribe()
        await client.connect()
        await sub.ready(10)
        clients.append(client)

    acked: list[tuple[int, int]] = []  # (n, offset) the API acknowledged
    number = 0

    async def publish_one() -> None:
        nonlocal number
        number += 1
        n = number
        node = server.node
        try:
            position = await asyncio.wait_for(
                server.run(
                    node.publish_data(
                        tenant.tenant_id, parse_channel(channel), orjson.dumps({"n": n}), key=UPLOAD_KEY
                    )
                ),
                2 * SUBSCRIBE_TIMEOUT,
            )
        except Exception:  # not acknowledged: the caller would retry or report
            return
        acked.append((n, position.offset))

    try:
        for _ in range(BEFORE):
            await publish_one()
        fault_task = asyncio.create_task(fault())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + fault_window
        in_flight: set[asyncio.Task[None]] = set()
        # Publications continue at their own pace, as API requests would: several are in
        # flight while Redis does not answer, and they complete together when it does.
        while loop.time() < deadline or not fault_task.done():
            in_flight.add(asyncio.create_task(publish_one()))
            await asyncio.sleep(PACE)
        await fault_task
        await asyncio.gather(*in_flight)
        for _ in range(AFTER):
            await publish_one()
            await asyncio.sleep(0.05)
        wanted = {offset for _, offset in acked}

        def everyone_has_everything() -> bool:
            return all(wanted <= set(r.offsets) for r in received)

        await _wait(
            everyone_has_everything,
            f"every client to get the {len(wanted)} acknowledged offsets",
            lambda: [sorted(wanted - set(r.offsets)) for r in received],
        )
    finally:
        for client in clients:
            await client.disconnect()
    assert len(acked) >= BEFORE + AFTER
    for r in received:
        assert r.offsets == sorted(set(r.offsets)), "exactly once and in order"
        got = dict(zip(r.offsets, r.numbers, strict=True))
        missing = [(n, offset) for n, offset in acked if got.get(offset) != n]
        assert not missing, f"acknowledged but not delivered (n, offset): {missing}"
    return received


@pytest.fixture
def broker_redis(tmp_path: Path) -> Any:
    redis = EmbeddedRedis(tmp_path / "broker-redis", port=free_port(), durable=False)
    redis.start()
    yield redis
    pid = _pid(redis)
    if pid is not None:
        os.kill(pid, signal.SIGCONT)
    redis.stop()


def _pid(redis: EmbeddedRedis) -> int | None:
    process = redis.process
    if process is None or process.proc is None or process.proc.poll() is not None:
        return None
    return process.proc.pid


async def test_redis_frozen_past_the_broker_timeouts(
    rt_server: Any, make_tenant: Any, broker_redis: EmbeddedRedis
) -> None:
    server = rt_server(realtime_broker_url=broker_redis.url)
    tenant = await make_tenant()
    pid = _pid(broker_redis)
    assert pid is not None

    async def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(FREEZE)
        finally:
            os.kill(pid, signal.SIGCONT)

    await _run_fault(server, tenant, freeze, fault_window=FREEZE + 2)


async def test_pubsub_connection_killed_between_publications(
    rt_server: Any, make_tenant: Any, broker_redis: EmbeddedRedis
) -> None:
    server = rt_server(realtime_broker_url=broker_redis.url)
    tenant = await make_tenant()

    async def kill_pubsub() -> None:
        admin = Redis.from_url(broker_redis.url)
        try:
            killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert int(killed) >= 1
        finally:
            await admin.aclose()

    await _run_fault(server, tenant, kill_pubsub, fault_window=1.0)


async def _store_without_live_feed(broker: RedisBroker, key: str, n: int) -> None:
    """Append a publication to the channel's history without its PUB/SUB message: what a
    live feed that lost a message leaves behind."""
    stream, meta, _ = redis_keys(key)
    await broker._publish_script(
        keys=[stream, meta],
        args=[
            pack_payload(orjson.dumps({"n": n}), None),
            broker.history_size,
            600,
            86400,
            "unused",
            "nowhere",
            "publish",
        ],
    )


async def _sdk_client(
    server: RealtimeServer, token: str, channel: str, received: Received
) -> centrifuge.Client:
    client = centrifuge.Client(server.ws_url, token=token, max_reconnect_delay=1.0)
    sub = client.new_subscription(
        channel, events=Recorder(received), recoverable=True, positioned=True, max_resubscribe_delay=1.0
    )
    await sub.subscribe()
    await client.connect()
    await sub.ready(10)
    return client


async def test_a_live_gap_is_filled_from_history_before_delivering(
    rt_server: Any, make_tenant: Any, channel_broker: RedisBroker
) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    key = parse_channel(channel).broker_name(t.tenant_id)
    received = Received()
    client = await _sdk_client(server, t.tokens["admin"], channel, received)
    try:
        await channel_broker.publish(key, orjson.dumps({"n": 1}))
        await _store_without_live_feed(channel_broker, key, 2)
        await _store_without_live_feed(channel_broker, key, 3)
        await channel_broker.publish(key, orjson.dumps({"n": 4}))  # live, but 2 and 3 never came
        await _wait(lambda: len(received.numbers) >= 4, "four publications", lambda: received.numbers)
        assert received.numbers == [1, 2, 3, 4] and received.offsets == sorted(received.offsets)
        assert received.unsubscribed == [] and len(received.subscribed) == 1  # no resubscribe needed
    finally:
        await client.disconnect()


async def test_a_gap_history_cannot_fill_tells_clients_to_recover(
    rt_server: Any, make_tenant: Any, channel_broker: RedisBroker
) -> None:
    server = rt_server(realtime_history_size=10)
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    key = parse_channel(channel).broker_name(t.tenant_id)
    received = Received()
    client = await _sdk_client(server, t.tokens["admin"], channel, received)
    trimming = RedisBroker(channel_broker.url, history_size=10, history_ttl=600)
    try:
        await channel_broker.publish(key, orjson.dumps({"n": 0}))
        for n in range(1, 501):  # lost by the live feed and trimmed from history
            await _store_without_live_feed(trimming, key, n)
        await channel_broker.publish(key, orjson.dumps({"n": 501}))
        # "insufficient state" (2500): the SDK resubscribes from its position; history no
        # longer covers it, so it is told recovered: false (and refetches), never left silent.
        await _wait(lambda: len(received.subscribed) >= 2, "the resubscribe", lambda: received.subscribed)
        again = received.subscribed[-1]
        assert again.was_recovering is True and again.recovered is False
        assert received.numbers == [0] and 501 not in received.numbers
        await channel_broker.publish(key, orjson.dumps({"n": 502}))
        await _wait(lambda: 502 in received.numbers, "the next publication", lambda: received.numbers)
    finally:
        await client.disconnect()
        await trimming.stop()
