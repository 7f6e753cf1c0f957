"""``buildpeer upload`` against a live server and moto: killed with SIGKILL mid-way, the
next run lists the stored parts and sends only the missing one; retries and re-signing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from cli.uploader import RetryPolicy, Uploader, UploadError
from core.settings import Settings
from server.app import create_app
from tests.conftest import TenantFixture

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
# The installed console script's entry point, run with this interpreter.
BUILDPEER = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())"]


class Gate:
    """ASGI wrapper around the real app: records request paths and can hold the signing
    of one part until released (so a test can kill the client at an exact point)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []
        self.hold_suffix: str | None = None
        self.reached = threading.Event()
        self.release = threading.Event()
        self.fail_next: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            self.paths.append(f"{scope['method']} {path}")
            if self.hold_suffix and path.endswith(self.hold_suffix) and path.startswith("/s3/multipart/"):
                self.reached.set()
                await asyncio.to_thread(self.release.wait, 60)
            for prefix, count in list(self.fail_next.items()):
                if path.startswith(prefix) and count > 0:
                    self.fail_next[prefix] = count - 1
                    await send({"type": "http.response.start", "status": 503, "headers": []})
                    await send({"type": "http.response.body", "body": b"busy"})
                    return
        await self.app(scope, receive, send)

    def signed_parts(self) -> list[str]:
        return [
            p.rsplit("/", 1)[1]
            for p in self.paths
            if p.startswith("GET /s3/multipart/") and p.count("/") == 4 and not p.endswith("/batch")
        ]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*BUILDPEER, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def gate_server(settings: Settings, live_server: Any) -> tuple[Gate, Any]:
    gate = Gate(create_app(settings, run_components=False))
    return gate, live_server(app=gate)


async def test_kill_9_then_resume_sends_only_missing_part(
    gate_server: tuple[Gate, Any], tenant: TenantFixture, tmp_path: Path, s3: Any, settings: Settings
) -> None:
    gate, server = gate_server
    data = os.urandom(12 * MIB)
    file = tmp_path / "levantamiento.pdf"
    file.write_bytes(data)
    env = {
        **os.environ,
        "BUILDPEER_API_URL": server.url,
        "BUILDPEER_TOKEN": tenant.tokens["field_worker"],
        "BUILDPEER_UPLOAD_STATE_DIR": str(tmp_path / "state"),
        "BUILDPEER_VAR_DIR": str(tmp_path / "var"),
    }
    args = ["upload", str(file), "--project", str(tenant.projects[0]), "--json"]
    gate.hold_suffix = "/3"  # parts 1 and 2 go through; the client is killed asking for part 3
    first = run_cli(args, env)
    try:
        assert await asyncio.to_thread(gate.reached.wait, 60), first.stderr.read() if first.stderr else ""
        first.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
    finally:
        gate.release.set()
        first.kill()
    assert gate.signed_parts() == ["1", "2", "3"]
    assert list((tmp_path / "state").glob("*.json"))  # the resume state survived

    gate.paths.clear()
    gate.hold_suffix = None
    second = run_cli(args, env)
    out, err = await asyncio.to_thread(second.communicate, timeout=120)
    assert second.returncode == 0, err.decode()
    assert gate.signed_parts() == ["3"], gate.paths  # only the missing part was signed and sent
    assert any(p.startswith("GET /s3/multipart/") and p.count("/") == 3 for p in gate.paths)  # listed parts
    assert "2 part(s) already stored" in err.decode()
    result = orjson.loads(out)
    assert result["resumed"] is True and result["parts"] == 3 and result["parts_sent"] == 1
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=settings.bucket, Key=result["key"])["Body"].read() == data
    assert not list((tmp_path / "state").glob("*.json"))  # done: state removed
    # The file's sha256 was declared at create (and kept across the kill for the resumed part's
    # signature); the upload document shows it for the processors to verify.
    async with httpx.AsyncClient(base_url=server.url) as api:
        doc = (await api.get(f"/api/v1/uploads/{result['id']}", headers=tenant.auth())).json()
    assert doc["declared_sha256"] == result["sha256"] and doc["size"] == len(data)


async def test_retries_with_backoff_on_5xx(
    gate_server: tuple[Gate, Any], tenant: TenantFixture, tmp_path: Path, s3: Any, settings: Settings
) -> None:
    gate, server = gate_server
    data = os.urandom(MIB + 17)
    file = tmp_path / "foto.jpg"
    file.write_bytes(data)
    gate.fail_next = {"/s3/multipart": 3}  # the create call fails three times with 503
    slept: list[float] = []
    log = io.StringIO()

    def upload() -> Any:
        with Uploader(
            server.url,
            tenant.tokens["field_worker"],
            state_dir=tmp_path / "s",
            sleep=slept.append,
            stream=log,
        ) as up:
            return up.upload(file, str(tenant.projects[0]))

    result = await asyncio.to_thread(upload)
    assert slept == [1, 2, 4]
    assert s3.get_object(Bucket=settings.bucket, Key=result.key)["Body"].read() == data
    assert "HTTP 503; retrying in 1 s" in log.getvalue()

    gate.fail_next = {"/s3/multipart": 100}
    slept.clear()
    file2 = tmp_path / "otra.jpg"
    file2.write_bytes(b"x")
    with pytest.raises(UploadError, match="giving up after 6 attempts"):
        await asyncio.to_thread(
            lambda: Uploader(
                server.url,
                tenant.tokens["field_worker"],
                state_dir=tmp_path / "s",
                sleep=slept.append,
                stream=log,
            ).upload(file2, str(tenant.projects[0]))
        )
    assert slept == [1, 2, 4, 8, 16]
    assert RetryPolicy(retries=7).delays() == [1, 2, 4, 8, 16, 30, 30]


async def test_refusals_are_not_retried(live_server: Any, tenant: TenantFixture, tmp_path: Path) -> None:
    server = live_server()
    file = tmp_path / "a.pdf"
    file.write_bytes(b"%PDF-1.4")
    slept: list[float] = []
    with pytest.raises(UploadError, match="HTTP 403"):
        await asyncio.to_thread(
            lambda: Uploader(
                server.url,
                tenant.tokens["investor"],
                state_dir=tmp_path,
                sleep=slept.append,
                stream=io.StringIO(),
            ).upload(file, str(tenant.projects[0]))
        )
    assert slept == []
    proc = await asyncio.to_thread(
        subprocess.run,
        [*BUILDPEER, "upload", str(file), "--project", "nope"],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "BUILDPEER_VAR_DIR": str(tmp_path)},
        timeout=60,
    )
    assert proc.returncode == 2 and b"--project must be a project id" in proc.stderr
