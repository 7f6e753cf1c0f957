"""``buildpeer serve --workers 2``: two server processes share one port (``SO_REUSEPORT``).

Clients spread over both workers; an SNS event that one worker's consumer applies reaches
the clients of both (as with two tasks); each worker has its own metrics listener
(``BUILDPEER_METRICS_PORT + index``); SIGTERM stops both gracefully, and a SIGKILLed
supervisor takes its workers with it (nothing left serving)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil

from core.events import Event, EventType
from core.status import UploadStatus
from devstack.process import ManagedProcess, free_port, port_open, wait_until
from tests.conftest import insert_upload as make_upload
from tests.realtime.conftest import FAST, ROOT, settings_env
from tests.realtime.test_js_sdk import sns_publish
from tests.realtime.wsclient import WsClient

CLIENTS = 20


def _two_free_ports() -> int:
    """A port P with P + 1 free as well (the second worker's metrics)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def _start(settings: Any, tmp_path: Path, port: int, metrics: int) -> ManagedProcess:
    s = settings.replace(**{**FAST, "metrics_port": metrics, "events_consumer_enabled": True})
    env = {**settings_env(s), "BUILDPEER_VAR_DIR": str(tmp_path / "var")}
    proc = ManagedProcess(
        f"serve-{port}",
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
        log_path=tmp_path / f"serve-{port}.log",
        env={**os.environ, **env},
        cwd=ROOT,
    )
    proc.start()
    return proc


def _alive_and_open(proc: ManagedProcess, port: int) -> bool:
    proc.check_alive()
    return port_open(port)


def _workers(proc: ManagedProcess) -> list[psutil.Process]:
    assert proc.proc is not None
    return [p for p in psutil.Process(proc.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]


async def test_two_workers_share_the_port_events_and_stop_together(
    stack: Any, settings: Any, tmp_path: Path, make_tenant: Any, pool: Any
) -> None:
    port, metrics = free_port(), _two_free_ports()
    proc = _start(settings, tmp_path, port, metrics)
    clients: list[WsClient] = []
    try:
        wait_until(lambda: _alive_and_open(proc, port), 60, "buildpeer serve --workers 2")
        wait_until(lambda: len(_workers(proc)) == 2, 30, "two workers")
        wait_until(lambda: port_open(metrics) and port_open(metrics + 1), 60, "both metrics listeners")
        async with httpx.AsyncClient() as http:
            for m in (metrics, metrics + 1):
                assert (await http.get(f"http://127.0.0.1:{m}/metrics")).status_code == 200

        t = await make_tenant()
        upload_id = await make_upload(pool, t)
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        for _ in range(CLIENTS):
            client = await WsClient.open(url)
            await client.connect(t.tokens["field_worker"])
            await client.call("subscribe", {"channel": f"upload:{upload_id}"})
            clients.append(client)
        serving = [w for w in _workers(proc) if any(c.status == "ESTABLISHED" for c in w.net_connections())]
        assert len(serving) == 2, "the kernel spread the clients over both workers"

        event = Event.new(
            EventType.UPLOAD_COMPLETED,
            tenant_id=t.tenant_id,
            project_id=t.projects[0],
            upload_id=upload_id,
            user_id=t.users["field_worker"],
            status=UploadStatus.UPLOADED,
        )
        await asyncio.to_thread(sns_publish, stack, event)
        for client in clients:  # exactly one worker applied it; every client has it
            (push,) = await client.publications(1, wait=60)
            assert push["pub"]["data"]["id"] == str(event.id)
    finally:
        for client in clients:
            await client.close()
        workers = _workers(proc) if proc.running else []
        proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0
    assert workers and not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


async def test_a_killed_supervisor_leaves_no_worker_serving(settings: Any, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(settings.replace(events_consumer_enabled=False), tmp_path, port, 0)
    try:
        wait_until(lambda: _alive_and_open(proc, port), 60, "buildpeer serve --workers 2")
        wait_until(lambda: len(_workers(proc)) == 2, 30, "two workers")
        workers = _workers(proc)
        proc.kill()  # SIGKILL: the task dies
        psutil.wait_procs(workers, timeout=10)
        assert not any(w.is_running() for w in workers)
        wait_until(lambda: not port_open(port), 10, "the port to close")
    finally:
        proc.stop()
