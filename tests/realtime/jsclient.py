"""The stock ``centrifuge`` JS SDK in a Node subprocess (tests/js/harness.js), scripted
over stdin/stdout JSON lines."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def ensure_node_modules() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is required for the SDK tests (Node 20)")
    if not (JS_DIR / "node_modules" / "centrifuge").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True)


class JsClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, ws_url: str, token: str, **env: str) -> JsClient:
        """``env``: harness options (``HUB_TRANSPORTS``, ``HUB_EMULATION``, ``HUB_FRAMES``)."""
        ensure_node_modules()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "harness.js"),
            cwd=JS_DIR,
            env={**os.environ, "HUB_URL": ws_url, "HUB_TOKEN": token, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def send(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **fields}) + b"\n")
        await self.proc.stdin.drain()

    async def next_event(self, wait: float = 20) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        if not line:
            raise EOFError("node harness exited")
        event: dict[str, Any] = orjson.loads(line)
        self.seen.append(event)
        return event

    async def wait_for(self, event: str, wait: float = 20, **match: Any) -> dict[str, Any]:
        while True:
            got = await self.next_event(wait)
            if got["event"] == event and all(got.get(k) == v for k, v in match.items()):
                return got

    async def collect(self, event: str, n: int, wait: float = 20) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            got = await self.next_event(wait)
            if got["event"] == event:
                out.append(got)
        return out

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send("exit")
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
