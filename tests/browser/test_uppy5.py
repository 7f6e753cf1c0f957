"""Stock Uppy 5 (``@uppy/core`` 5.2.0 + ``@uppy/aws-s3`` 5.1.0, Companion mode with ``endpoint`` +
``headers``) in Debian's Chromium, on its own bare page (tests/browser/uppy5/), now that the
dashboard runs Uppy 6: a 1 MiB single upload and a 12 MiB multipart one (3 parts); the bytes
in S3 are the file's and both reach ``ready``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
from tests.browser.test_uppy6 import MIB, mp4_like, wait_ready
from tests.conftest import LiveServer, create_tenant_fixture


@pytest.fixture(scope="session")
def uppy5_page() -> Path:
    return build_stock_page("uppy5", {"aws-s3": "5.1.0", "core": "5.2.0"})


async def test_stock_uppy5_companion_single_and_multipart_reach_ready(
    uppy5_page: Path, chromium: Path, running_pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = running_pipeline.settings
    tenant = await create_tenant_fixture(pool, settings)
    project = tenant.projects[0]
    app = create_app(settings)
    app.router.routes.append(Mount("/uppy5", StaticFiles(directory=uppy5_page)))
    server = LiveServer(app)
    server.start()
    try:
        small, large = tmp_path / "acta-corta.mp4", tmp_path / "acta-larga.mp4"
        small.write_bytes(mp4_like(MIB))
        large.write_bytes(mp4_like(12 * MIB))
        code, report, stderr = await run_driver(
            "uppy6.mjs",
            {
                "url": server.url,
                "page": "/uppy5/index.html",
                "mode": "companion",
                "token": tenant.tokens["field_worker"],
                "projectId": str(project),
                "timeoutMs": 60_000,
                "screenshot": str(artifacts_dir() / "uppy5-companion.png"),
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
        assert "POST /s3/multipart" in api and any(r.startswith("GET /s3/params") for r in api), api
        assert all(r != "POST /s3/sign" for r in api), api
        assert uppy["progress"][large.name][-1] == 12 * MIB

        async with tenant_transaction(pool, tenant.tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT file_name, s3_key FROM uploads WHERE project_id = $1 AND file_name = ANY($2)",
                project,
                [small.name, large.name],
            )
        keys = {r["s3_key"]: tmp_path / r["file_name"] for r in rows}
        assert sorted(p.name for p in keys.values()) == sorted([small.name, large.name])
        s3 = aws_client(settings, "s3")
        for key, path in keys.items():
            stored = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
            assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
        done = await wait_ready(pool, tenant.tenant_id, list(keys))
        for key, path in keys.items():
            assert done[key]["status"] == "ready", done[key]
            assert done[key]["size_bytes"] == path.stat().st_size
    finally:
        server.stop()
