"""Three ``buildpeer serve`` processes on the six-process Redis Cluster behind a local
balancer that spreads connections round-robin (issue 17).

3,000 stock ``centrifuge`` JS SDK clients (three Node processes of 1,000) connect through
the balancer, so each instance serves about a third, and subscribe to one project channel.
Upload events go through SNS to the events queue, which all three instances consume: each
event, whichever instance applied it, reaches every client on every instance. Then
publications flow through the sharded broker and instance A is SIGKILLed mid-stream: its
clients reconnect through the balancer to B or C and recover from history; every client ends
with every publication exactly once, in order.

Built to pass on two loaded cores: the waits are generous (they end as soon as every client
holds what it should), progress is polled as a two-number summary per Node process (the full
per-client report is read once, at the end), and a client counts as moved off A only for a
reconnect after its first subscribe (a connect that timed out before it is not a lost server).
The same with protocol-level clients and exact per-client accounting: ``bench/soak.py
--kill-one``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest

from core.events import Event, EventType
from core.status import UploadStatus
from devstack.redis_cluster import RedisCluster
from server.realtime.broker import Publication
from server.realtime.redis_broker import RedisBroker
from tests.conftest import insert_upload as make_upload
from tests.realtime.conftest import publish
from tests.realtime.jsclient import ensure_node_modules
from tests.realtime.test_js_sdk import sns_publish
from tests.resilience.proxy import TcpProxy
from tests.resilience.test_server_sigkill import HARNESS, _line, serve

__all__ = ["serve"]  # the fixture, used by name below

PROCESSES = 3
PER_PROCESS = 1000
CLIENTS = PROCESSES * PER_PROCESS
EVENTS = 2
PUBLICATIONS = 60
KILL_AFTER = 20
INTERVAL = 0.05


@pytest.fixture
async def cluster_broker(redis_cluster: RedisCluster) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_cluster.url, history_size=300, history_ttl=600, cluster=True)

    def ignore(channel: str, pub: Publication) -> None:
        return None

    async def nothing() -> None:
        return None

    await broker.start(ignore, nothing)
    yield broker
    await broker.stop()


@pytest.fixture
async def harnesses(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    logs: list[BinaryIO] = []

    async def start(url: str, token: str, channel: str) -> asyncio.subprocess.Process:
        ensure_node_modules()
        logs.append((tmp_path / f"harness-{len(procs)}.log").open("wb"))
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HARNESS),
            env={
                **os.environ,
                "HUB_URL": url,
                "HUB_TOKEN": token,
                "HUB_CHANNEL": channel,
                "HUB_CLIENTS": str(PER_PROCESS),
            },
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=logs[-1],
            limit=64 * 1024 * 1024,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    for log in logs:
        log.close()


async def _all_clients(procs: list[asyncio.subprocess.Process]) -> list[dict[str, Any]]:
    clients: list[dict[str, Any]] = []
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b'{"op": "report"}\n')
        await proc.stdin.drain()
        clients += (await _line(proc, 120))["clients"]  # 1,000 clients' lists: a few MB of JSON
    return clients


async def _least(procs: list[asyncio.subprocess.Process]) -> int:
    """The fewest publications any client of any Node process holds."""
    least = []
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b'{"op": "summary"}\n')
        await proc.stdin.drain()
        least.append(int((await _line(proc, 60))["least"]))
    return min(least)


async def _until_every_client_holds(
    procs: list[asyncio.subprocess.Process], count: int, within: float
) -> None:
    """Returns once every client holds ``count`` publications (or ``within`` seconds passed:
    the assertions on the full report then say who is short)."""
    deadline = time.monotonic() + within
    while await _least(procs) < count:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


@pytest.mark.timeout(420)  # the waits below end as soon as every client is served
async def test_three_instances_share_events_and_a_killed_ones_clients_lose_nothing(
    stack: Any,
    serve: Any,
    harnesses: Any,
    make_tenant: Any,
    pool: Any,
    redis_cluster: RedisCluster,
    cluster_broker: RedisBroker,
) -> None:
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    upload_id = await make_upload(pool, t)
    common = {
        "redis_url": redis_cluster.url,
        "redis_cluster": True,
        "events_consumer_enabled": True,  # all three read the queue; any may apply an event
        "realtime_tenant_connection_limit": 0,
        "email_events_consumer_enabled": False,
        "workers": 1,  # an instance is one server process here (the default is the CPU count)
        # 1,000 clients connecting to each on two cores: a connect may wait longer than the
        # short test ping before it is read
        "realtime_ping_seconds": 10.0,
        "realtime_pong_timeout_seconds": 8.0,
    }
    instances = await asyncio.gather(*(asyncio.to_thread(serve, **common) for _ in range(3)))
    server_a = instances[0][0]
    proxy = TcpProxy(*[("127.0.0.1", port) for _, port in instances], round_robin=True).start()
    procs: list[asyncio.subprocess.Process] = []
    try:
        url = f"ws://127.0.0.1:{proxy.port}/connection/websocket"
        for _ in range(PROCESSES):  # one Node process of 1,000 clients after the other
            procs.append(await harnesses(url, t.tokens["investor"], channel))
            assert (await _line(procs[-1], 240))["event"] == "ready"
        assert proxy.accepted >= CLIENTS  # round robin: a third on each instance
        # Connection i went to instance i mod 3. A connect that failed before its client
        # subscribed was retried on the next instance: each extra one can cost A one client.
        on_a_at_least = -(-proxy.accepted // 3) - (proxy.accepted - CLIENTS)

        steps = [
            (UploadStatus.UPLOADED, EventType.UPLOAD_COMPLETED),
            (UploadStatus.PROCESSING, EventType.PROCESSING_COMPLETED),
        ]
        # One after the other: competing consumers may apply two queued events in either
        # order, and the applier rightly drops the older status arriving second (stale).
        for held, (status, etype) in enumerate(steps, 1):
            event = Event.new(
                etype,
                tenant_id=t.tenant_id,
                project_id=t.projects[0],
                upload_id=upload_id,
                user_id=t.users["field_worker"],
                status=status,
            )
            await asyncio.to_thread(sns_publish, stack, event)
            await _until_every_client_holds(procs, held, 120)  # SNS, SQS, a consumer's long poll
        clients = await _all_clients(procs)
        assert all(len(c["offsets"]) == EVENTS for c in clients), "an event missed clients on some instance"
        event_offsets = clients[0]["offsets"]

        offsets = []
        for n in range(PUBLICATIONS):
            if n == KILL_AFTER:
                await asyncio.to_thread(server_a.kill)  # SIGKILL: no goodbye to anyone
                assert not server_a.running
            offsets.append(await publish(cluster_broker, t.tenant_id, channel, orjson.dumps({"n": n})))
            await asyncio.sleep(INTERVAL)

        expected = [None] * EVENTS + list(range(PUBLICATIONS))
        await _until_every_client_holds(procs, len(expected), 180)  # reconnects and recoveries
        await asyncio.sleep(1)  # a duplicate arriving late would show in the report
        clients = await _all_clients(procs)
        assert len(clients) == CLIENTS
        short = [(i, len(c["n"])) for i, c in enumerate(clients) if c["n"] != expected]
        assert not short, f"clients missing, repeating or reordering publications: {short[:10]}"
        moved = 0
        for c in clients:
            assert c["offsets"] == event_offsets + offsets  # every offset exactly once, in order
            assert not c["errors"]
            first, *again = c["subscribed"]
            assert first["wasRecovering"] is False
            if c["lateDisconnects"]:
                moved += 1
                assert again and all(s["wasRecovering"] and s["recovered"] for s in again), c["subscribed"]
        # A's third of the clients lost their server and recovered on B or C (and any other
        # client a loaded machine disconnected meanwhile)
        assert CLIENTS // 4 < on_a_at_least <= moved < CLIENTS, (on_a_at_least, moved)
    finally:
        for proc in procs:  # the clients go first: the proxy then has few connections to cut
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(proxy.close)
