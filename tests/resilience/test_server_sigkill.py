"""A server process killed with SIGKILL under 200 connected clients (issue 8).

Two ``buildpeer serve`` processes (A, B) on the same Redis, behind a TCP proxy that
forwards each new connection to the first instance that accepts it (a load balancer).
200 stock ``centrifuge`` SDK clients connect through it — all land on A — and subscribe
to a project channel while publications flow through the Redis broker. A is killed
mid-stream; the SDK reconnects (to B), recovers its subscription from history, and every
client ends with every publication exactly once, in order.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack.process import ManagedProcess, free_port, port_open, wait_until
from tests.realtime.conftest import channel_broker, publish, settings_env
from tests.realtime.jsclient import ensure_node_modules
from tests.resilience.conftest import QUIET
from tests.resilience.proxy import TcpProxy

__all__ = ["channel_broker"]  # the fixture, used by name below

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "js" / "many_clients.js"
CLIENTS = 200
PUBLICATIONS = 240
KILL_AFTER = 80
INTERVAL = 0.02


@pytest.fixture
def serve(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """``serve(**overrides)`` → a started ``buildpeer serve`` :class:`ManagedProcess` and
    its port; every one is stopped at the end."""
    procs: list[ManagedProcess] = []

    def start(**overrides: Any) -> tuple[ManagedProcess, int]:
        port = free_port()
        s = settings.replace(**{**QUIET, **overrides})
        env = {**settings_env(s), "BUILDPEER_VAR_DIR": str(tmp_path / "var")}
        proc = ManagedProcess(
            f"serve-{port}",
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            log_path=tmp_path / f"serve-{port}.log",
            env={**os.environ, **env},
            cwd=ROOT,
        )
        proc.start()
        procs.append(proc)

        def ready() -> bool:
            proc.check_alive()
            return port_open(port)

        wait_until(ready, 60, "buildpeer serve")
        return proc, port

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
async def many_clients() -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(url: str, token: str, channel: str) -> asyncio.subprocess.Process:
        ensure_node_modules()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HARNESS),
            env={
                **os.environ,
                "HUB_URL": url,
                "HUB_TOKEN": token,
                "HUB_CHANNEL": channel,
                "HUB_CLIENTS": str(CLIENTS),
            },
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _line(proc: asyncio.subprocess.Process, wait: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), wait)
    if not line:
        raise EOFError("node harness exited")
    message: dict[str, Any] = orjson.loads(line)
    return message


async def _report(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    assert proc.stdin is not None
    proc.stdin.write(b'{"op": "report"}\n')
    await proc.stdin.drain()
    clients: list[dict[str, Any]] = (await _line(proc, 30))["clients"]
    return clients


async def test_clients_of_a_killed_server_recover_on_another_with_nothing_lost(
    serve: Any, many_clients: Any, make_tenant: Any, channel_broker: Any
) -> None:
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    common = {"events_consumer_enabled": False, "realtime_tenant_connection_limit": 0}
    server_a, port_a = await asyncio.to_thread(serve, **common)
    _, port_b = await asyncio.to_thread(serve, **common)
    proxy = TcpProxy(("127.0.0.1", port_a), ("127.0.0.1", port_b)).start()
    try:
        harness = await many_clients(
            f"ws://127.0.0.1:{proxy.port}/connection/websocket", t.tokens["investor"], channel
        )
        assert (await _line(harness, 60))["event"] == "ready"
        offsets = []
        for n in range(PUBLICATIONS):
            if n == KILL_AFTER:
                await asyncio.to_thread(server_a.kill)  # SIGKILL: no goodbye to anyone
                assert not server_a.running
            offsets.append(await publish(channel_broker, t.tenant_id, channel, orjson.dumps({"n": n})))
            await asyncio.sleep(INTERVAL)
        assert offsets == list(range(offsets[0], offsets[0] + PUBLICATIONS))

        expected = list(range(PUBLICATIONS))
        clients: list[dict[str, Any]] = []
        for _ in range(150):  # up to 30 s for the last reconnects and recoveries
            clients = await _report(harness)
            if all(len(c["n"]) >= PUBLICATIONS for c in clients):
                break
            await asyncio.sleep(0.2)
        assert len(clients) == CLIENTS
        short = [(i, len(c["n"])) for i, c in enumerate(clients) if c["n"] != expected]
        assert not short, f"clients missing, repeating or reordering publications: {short[:10]}"
        for c in clients:
            assert c["offsets"] == offsets  # every offset exactly once, in order
            assert c["disconnects"] >= 1  # each one really lost its server
            first, *again = c["subscribed"]
            assert first["wasRecovering"] is False
            assert again and all(s["wasRecovering"] and s["recovered"] for s in again), c["subscribed"]
            assert not c["errors"]
        assert proxy.accepted > CLIENTS  # the reconnects went through the balancer, to B
    finally:
        proxy.close()
