"""Fixtures of the real-time hub tests: a live uvicorn server running the real app (hub
and events consumer as components), short timers, and a broker handle for publishing
into channels from the test's side of Redis."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette

from core.settings import PREFIX, Settings
from devstack.process import ManagedProcess, free_port, port_open, wait_until
from server.app import create_app
from server.realtime.broker import Publication
from server.realtime.channels import parse_channel
from server.realtime.node import Node
from server.realtime.redis_broker import RedisBroker

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]

FAST = {
    "realtime_ping_seconds": 2.0,
    "realtime_pong_timeout_seconds": 1.5,
    "realtime_shutdown_seconds": 2.0,
    "events_wait_seconds": 1,
    # Not exercised here; its stop waits out a 20 s SQS long poll (left to its owner).
    "email_events_consumer_enabled": False,
}


@dataclass
class RealtimeServer:
    app: Starlette
    url: str
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/connection/websocket"

    @property
    def node(self) -> Node:
        node: Node = self.app.state.realtime
        return node

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's event loop (the server runs in its own thread)."""
        assert self.node.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.node.loop))


@pytest.fixture
def rt_server(settings: Settings, live_server: Any) -> Callable[..., RealtimeServer]:
    def start(**overrides: Any) -> RealtimeServer:
        s = settings.replace(**{**FAST, **overrides})
        app = create_app(s)
        server = live_server(app=app)
        return RealtimeServer(app, server.url, s)

    return start


@pytest.fixture(scope="session")
async def channel_broker(stack: Any) -> AsyncIterator[RedisBroker]:
    """The test's own broker client on the stack's Redis (publishes reach every server)."""
    broker = RedisBroker(stack.settings.redis_url, history_size=300, history_ttl=600)

    def ignore(channel: str, pub: Publication) -> None:
        return None

    async def nothing() -> None:
        return None

    await broker.start(ignore, nothing)
    yield broker
    await broker.stop()


async def publish(broker: RedisBroker, tenant_id: uuid.UUID, channel: str, data: bytes) -> int:
    position = await broker.publish(parse_channel(channel).broker_name(tenant_id), data)
    return position.offset


def settings_env(settings: Settings) -> dict[str, str]:
    """``BUILDPEER_*`` variables reproducing ``settings`` (for server subprocesses)."""
    env: dict[str, str] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[PREFIX + f.name.upper()] = str(value)
    return env


@pytest.fixture
def server_process(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """``start(**overrides)`` → the ws URL of a ``buildpeer serve`` subprocess."""
    procs: list[ManagedProcess] = []

    def start(**overrides: Any) -> str:
        port = free_port()
        s = settings.replace(**{**FAST, **overrides})
        env = {**settings_env(s), "BUILDPEER_VAR_DIR": str(tmp_path / "var")}
        proc = ManagedProcess(
            f"serve-{port}",
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            log_path=tmp_path / f"serve-{port}.log",
            env={k: v for k, v in {**os.environ, **env}.items()},
            cwd=ROOT,
        )
        proc.start()
        procs.append(proc)

        def ready() -> bool:
            proc.check_alive()
            return port_open(port)

        wait_until(ready, 60, "buildpeer serve")
        return f"ws://127.0.0.1:{port}/connection/websocket"

    yield start
    for proc in procs:
        proc.stop()
