"""The real-time hub on a real six-process Redis Cluster (``BUILDPEER_REDIS_CLUSTER=true``:
Cluster clients for the status cache, limits and throttles, sharded PUB/SUB for the broker).

* The stock centrifuge-js SDK receives an upload's publications end to end (SNS → the events
  consumer → the status change → SPUBLISH → the socket), and the status cache on the Cluster
  holds the newest state.
* A master is failed over (``CLUSTER FAILOVER`` on its replica) while 200 stock centrifuge
  Python SDK clients are subscribed and publications continue: every client ends with every
  acknowledged publication exactly once and in order (live, filled from history, or
  recovered after being told to).
"""

from __future__ import annotations

import asyncio
from typing import Any

import centrifuge
import orjson

from core.events import Event, EventType
from core.status import UploadStatus
from devstack.redis_cluster import RedisCluster
from server import redis_client
from server.realtime.channels import parse_channel
from server.realtime.redis_broker import SUBSCRIBE_TIMEOUT, _keys
from server.realtime.redis_shards import ShardedSubscriber
from server.status_cache import StatusCache
from tests.conftest import insert_upload as make_upload
from tests.realtime.jsclient import JsClient
from tests.realtime.test_broker_faults import Received, Recorder, _wait
from tests.realtime.test_js_sdk import sns_publish

CLIENTS = 200
BEFORE = 5
AFTER = 10
PACE = 0.1


def on_cluster(rt_server: Any, cluster: RedisCluster) -> Any:
    return rt_server(redis_url=cluster.url, redis_cluster=True)


async def test_js_sdk_receives_an_uploads_publications_on_the_cluster(
    stack: Any, rt_server: Any, make_tenant: Any, pool: Any, redis_cluster: RedisCluster
) -> None:
    server = on_cluster(rt_server, redis_cluster)
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    js = await JsClient.start(server.ws_url, t.tokens["field_worker"])
    try:
        await js.send("subscribe", channel=f"upload:{upload_id}")
        await js.send("connect")
        await js.wait_for("connected")
        subscribed = await js.wait_for("subscribed")
        assert subscribed["recoverable"] is True

        def event(etype: EventType, status: UploadStatus) -> Event:
            return Event.new(
                etype,
                tenant_id=t.tenant_id,
                project_id=t.projects[0],
                upload_id=upload_id,
                user_id=t.users["field_worker"],
                status=status,
            )

        pubs = []
        for step in (
            event(EventType.UPLOAD_COMPLETED, UploadStatus.UPLOADED),
            event(EventType.PROCESSING_COMPLETED, UploadStatus.PROCESSING),
            event(EventType.PROCESSING_COMPLETED, UploadStatus.READY),
        ):
            await asyncio.to_thread(sns_publish, stack, step)
            pubs += await js.collect("publication", 1, wait=30)
        assert [p["data"]["upload"]["status"] for p in pubs] == ["uploaded", "processing", "ready"]
        offsets = [int(p["offset"]) for p in pubs]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3
        cluster = redis_client.connect(redis_cluster.url, cluster=True)
        try:
            cached = await StatusCache(cluster).get_raw(t.tenant_id, upload_id)
        finally:
            await cluster.aclose()
        assert cached is not None and orjson.loads(cached)["status"] == "ready"
    finally:
        await js.stop()


async def test_a_master_failover_under_200_subscribers_loses_nothing(
    rt_server: Any, make_tenant: Any, redis_cluster: RedisCluster
) -> None:
    server = on_cluster(rt_server, redis_cluster)
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    broker_channel = parse_channel(channel).broker_name(t.tenant_id)
    master = redis_cluster.master_of_key(_keys(broker_channel)[0])
    received = [Received() for _ in range(CLIENTS)]
    clients: list[centrifuge.Client] = []
    acked: list[tuple[int, int]] = []
    number = 0

    async def publish_one() -> None:
        nonlocal number
        number += 1
        n = number
        try:
            position = await asyncio.wait_for(
                server.run(
                    server.node.publish_data(
                        t.tenant_id, parse_channel(channel), orjson.dumps({"n": n}), key=None
                    )
                ),
                2 * SUBSCRIBE_TIMEOUT,
            )
        except Exception:  # not acknowledged: the caller would retry
            return
        acked.append((n, position.offset))

    try:
        for r in received:
            client = centrifuge.Client(server.ws_url, token=t.tokens["admin"], max_reconnect_delay=1.0)
            sub = client.new_subscription(
                channel, events=Recorder(r), recoverable=True, positioned=True, max_resubscribe_delay=1.0
            )
            await sub.subscribe()
            await client.connect()
            await sub.ready(20)
            clients.append(client)
        for _ in range(BEFORE):
            await publish_one()
        failover = asyncio.create_task(asyncio.to_thread(redis_cluster.failover, master))
        in_flight: set[asyncio.Task[None]] = set()
        while not failover.done():  # publications continue at their own pace meanwhile
            in_flight.add(asyncio.create_task(publish_one()))
            await asyncio.sleep(PACE)
        new_master = await failover
        assert new_master != master and redis_cluster.master_of_key(_keys(broker_channel)[0]) == new_master
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
            lambda: [sorted(wanted - set(r.offsets)) for r in received if not wanted <= set(r.offsets)][:5],
            limit=120,
        )
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)
    assert len(acked) >= BEFORE + AFTER
    for r in received:
        assert r.offsets == sorted(set(r.offsets)), "exactly once and in order"
        got = dict(zip(r.offsets, r.numbers, strict=True))
        missing = [(n, offset) for n, offset in acked if got.get(offset) != n]
        assert not missing, f"acknowledged but not delivered (n, offset): {missing}"
    # the hub noticed the move (sunsubscribe or broken connection) and re-homed its feed
    broker: Any = server.node.broker
    assert broker.reconnects >= 1


async def test_a_shard_left_without_channels_is_not_taken_for_silent(redis_cluster: RedisCluster) -> None:
    """A master whose channels were all unsubscribed gets no pings and sends nothing: that
    silence is not a broken connection (it was re-homed, logged and position-checked)."""
    cluster = redis_client.connect_cluster(redis_cluster.url)
    await redis_client.prepare(cluster)

    async def rehomed() -> None:
        return None

    subscriber = ShardedSubscriber(
        cluster,
        redis_cluster.url,
        on_message=lambda channel, data: None,
        on_rehomed=rehomed,
        idle_ping_seconds=0.2,
    )
    try:
        await subscriber.start("bp:test-control")
        control_node = cluster.get_node_from_key("bp:test-control")
        other = next(
            f"bp:test-{n}" for n in range(10_000) if cluster.get_node_from_key(f"bp:test-{n}") != control_node
        )
        await subscriber.subscribe(other)
        await subscriber.unsubscribe(other)
        await asyncio.sleep(3 * 3 * subscriber.idle_ping_seconds)  # three silence limits
        assert subscriber.rehomes == 0
        await subscriber.subscribe(other)  # the shard still serves
    finally:
        await subscriber.stop()
        await cluster.aclose()
