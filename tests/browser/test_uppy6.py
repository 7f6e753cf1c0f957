"""Stock Uppy 6.3.1 (``@uppy/core`` + ``@uppy/aws-s3``, what ``npm install`` gives today) in
Debian's Chromium, in both of its modes, with the page served under the API's own origin:

- ``signRequest``: the page's sign function calls ``POST /s3/sign`` with the bearer token and
  Uppy talks to S3 itself (form POST for the single file; create, parts, complete on S3);
- Companion mode: ``companionEndpoint`` is the page's origin and the only credential is the
  session cookie of ``POST /api/v1/session`` (Uppy 6 sends no headers).

Each mode uploads a 1 MiB file (single upload) and a 12 MiB one (multipart, 3 parts); the
bytes in S3 are the file's and the upload reaches ``ready`` through the real pipeline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from core.db import tenant_transaction
from devstack.aws import client as aws_client
from server.app import create_app
from tests.browser.conftest import Pipeline, artifacts_dir
from tests.browser.stock_pages import build_stock_page
from tests.browser.test_dashboard import run_driver
from tests.conftest import LiveServer, create_tenant_fixture

MIB = 1024 * 1024
READY_WAIT_SECONDS = 120


@pytest.fixture(scope="session")
def uppy6_page() -> Path:
    return build_stock_page("uppy6", {"aws-s3": "6.3.1", "core": "6.3.1"})


def mp4_like(size: int) -> bytes:
    """An MP4 ``ftyp`` header, then random bytes: sniffed as video/mp4, clean for clamd."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return head + os.urandom(size - len(head))


async def wait_ready(pool: asyncpg.Pool, tenant_id: uuid.UUID, keys: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while True:
        async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT s3_key, status, reason_code, size_bytes FROM uploads WHERE s3_key = ANY($1)", keys
            )
        found = {r["s3_key"]: dict(r) for r in rows}
        done = len(found) == len(keys) and all(
            r["status"] in ("ready", "failed", "quarantined") for r in found.values()
        )
        if done or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("mode", ["sign", "companion"])
async def test_stock_uppy6_single_and_multipart_reach_ready(
    mode: str,
    uppy6_page: Path,
    chromium: Path,
    running_pipeline: Pipeline,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    settings = running_pipeline.settings
    tenant = await create_tenant_fixture(pool, settings)
    app = create_app(settings)
    app.router.routes.append(Mount("/uppy6", StaticFiles(directory=uppy6_page)))
    server = LiveServer(app)
    app.state.settings = settings.replace(public_url=server.url)  # the page's origin is the public one
    server.start()
    try:
        small, large = tmp_path / "recorrido-corto.mp4", tmp_path / "recorrido-losa.mp4"
        small.write_bytes(mp4_like(MIB))
        large.write_bytes(mp4_like(12 * MIB))
        screenshot = artifacts_dir() / f"uppy6-{mode}.png"
        code, report, stderr = await run_driver(
            "uppy6.mjs",
            {
                "url": server.url,
                "mode": mode,
                "token": tenant.tokens["field_worker"],
                "projectId": str(tenant.projects[0]),
                "timeoutMs": 60_000,
                "screenshot": str(screenshot),
                "files": [
                    {"path": str(small), "name": small.name, "mimeType": "video/mp4"},
                    {"path": str(large), "name": large.name, "mimeType": "video/mp4"},
                ],
            },
        )
        assert code == 0 and report.get("ok"), json.dumps(report, indent=1)[:6000] + stderr[-3000:]
        uppy = report["uppy"]
        assert uppy["errors"] == [] and uppy["failed"] == [], uppy
        assert sorted(uppy["successful"]) == sorted([small.name, large.name])
        api = report["apiRequests"]
        if mode == "sign":
            assert all(not r.startswith(("GET /s3/params", "POST /s3/multipart")) for r in api), api
            assert sum(r == "POST /s3/sign" for r in api) >= 1 + 1 + 3 + 1  # put, create, 3 parts, complete
        else:
            assert "POST /api/v1/session" in api and "POST /s3/multipart" in api, api
            assert any(r.startswith("GET /s3/params") for r in api), api
            assert uppy["cookieVisibleToScript"] is False  # HttpOnly
        assert uppy["progress"][large.name][-1] == 12 * MIB

        s3 = aws_client(settings, "s3")
        keys = {}
        for path in (small, large):
            key = uppy["success"][path.name]["key"]
            assert key.startswith(f"tenant-{tenant.tenant_id}/project-{tenant.projects[0]}/uploads/"), key
            stored = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
            assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
            keys[key] = path
        rows = await wait_ready(pool, tenant.tenant_id, list(keys))
        for key, path in keys.items():
            assert rows[key]["status"] == "ready", rows[key]
            assert rows[key]["size_bytes"] == path.stat().st_size
    finally:
        server.stop()
