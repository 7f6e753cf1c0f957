"""``buildpeer serve`` on SIGTERM ends every real-time session with 3001 ("shutdown":
reconnect elsewhere) before it waits for open responses — the stream transports included,
whose responses would otherwise hold the graceful wait to its end and be cut."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from devstack.process import ManagedProcess, free_port, port_open, wait_until
from tests.realtime.conftest import FAST, ROOT, settings_env
from tests.realtime.wsclient import WsClient


def _alive_and_open(proc: ManagedProcess, port: int) -> bool:
    proc.check_alive()
    return port_open(port)


async def _open_stream(client: httpx.AsyncClient, url: str, kind: str, token: str) -> tuple[Any, Any]:
    """A stream transport (``http_stream`` or ``sse``) whose connect reply was read:
    (response context, line iterator)."""
    command = orjson.dumps({"id": 1, "connect": {"token": token}})
    if kind == "sse":
        ctx = client.stream("GET", url + "/connection/sse", params={"cf_connect": command.decode()})
    else:
        ctx = client.stream("POST", url + "/connection/http_stream", content=command)
    response = await ctx.__aenter__()
    assert response.status_code == 200
    lines = aiter(_frames(response.aiter_lines()))
    reply = await asyncio.wait_for(anext(lines), 10)
    assert "connect" in reply, reply
    return ctx, lines


async def _frames(lines: Any) -> Any:
    """The JSON frames of a stream (SSE's ``data:`` lines or the stream's own lines)."""
    async for line in lines:
        line = line.removeprefix("data:").strip()
        if line.startswith("{"):
            yield orjson.loads(line)


async def _rest(frames: Any) -> list[dict[str, Any]]:
    """Every frame until the response ends."""
    return [frame async for frame in frames]


async def test_sigterm_ends_stream_and_websocket_sessions_with_shutdown(
    settings: Any, tmp_path: Path, make_tenant: Any
) -> None:
    t = await make_tenant()
    token = t.tokens["field_worker"]
    port = free_port()
    s = settings.replace(**FAST)
    proc = ManagedProcess(
        f"serve-{port}",
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "1"],
        log_path=tmp_path / "serve.log",
        env={**os.environ, **settings_env(s), "BUILDPEER_VAR_DIR": str(tmp_path / "var")},
        cwd=ROOT,
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _alive_and_open(proc, port), 60, "buildpeer serve")
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client:
            streams = [
                await _open_stream(client, url, "http_stream", token),
                await _open_stream(client, url, "sse", token),
            ]
            ws = await WsClient.open(f"ws://127.0.0.1:{port}/connection/websocket")
            assert "connect" in await ws.connect(token)
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGTERM)
            for ctx, lines in streams:
                frames = await asyncio.wait_for(_rest(lines), 60)
                await ctx.__aexit__(None, None, None)
                assert {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}} in frames, frames
            closed = await ws.closed(60)
            assert (closed.code, closed.reason) == (3001, "shutdown")
        await asyncio.to_thread(proc.proc.wait, 60)
        assert proc.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on
        assert "timeout graceful shutdown exceeded" not in (tmp_path / "serve.log").read_text()
    finally:
        proc.stop()
