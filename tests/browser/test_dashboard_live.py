"""The dashboard's live parts in Debian's Chromium (driver: dashboard_live.mjs):

- the inbox bell: an item added through the server's own inbox service (``inbox_for`` on the
  running app, on its event loop) for the signed-in user raises the count and shows in the
  open list without a reload;
- a 12 MiB multipart upload (Uppy 6, signRequest): its row's progress bar shows at least two
  different values before ``ready`` (S3 part requests 2 and 3 wait until the bar has shown a
  new value, so the sampling does not depend on speed);
- a 12 MiB upload cancelled in Uppy mid-way fails with ``aborted`` (the abort is signed by
  /s3/sign), its row offers Retry, and Retry uploads the same File as a new upload that
  reaches ``ready``.

Screenshots: ``test-artifacts/dashboard-bell.png``, ``dashboard-failed-retry.png``,
``dashboard-live.png``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from core.db import tenant_transaction
from server.inbox_api import inbox_for
from subscribers.inbox.store import NewItem
from tests.browser.conftest import Pipeline, artifacts_dir
from tests.browser.test_dashboard import run_driver
from tests.browser.test_uppy6 import MIB, mp4_like
from tests.conftest import create_tenant_fixture

WAIT_SECONDS = 90
ITEM_TITLE = "Inspección programada: losa del piso 3"


async def wait_for_file(path: Path, driver: asyncio.Task[Any]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await asyncio.to_thread(path.exists):
        if driver.done() or time.monotonic() > deadline:
            raise AssertionError(f"the driver never waited for the bell: {path}")
        await asyncio.sleep(0.1)


async def test_bell_progress_and_retry_live(
    dashboard_bundle: Path,
    chromium: Path,
    running_pipeline: Pipeline,
    live_server: Any,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    settings = running_pipeline.settings
    tenant = await create_tenant_fixture(pool, settings)
    project = tenant.projects[0]
    user = tenant.users["field_worker"]
    server = live_server(settings_override=settings)
    progress, retry = tmp_path / "avance-losa.mp4", tmp_path / "recorrido-reintento.mp4"
    progress.write_bytes(mp4_like(12 * MIB))
    retry.write_bytes(mp4_like(12 * MIB))
    waiting = tmp_path / "bell-waiting"
    driver = asyncio.create_task(
        run_driver(
            "dashboard_live.mjs",
            {
                "url": server.url,
                "projectId": str(project),
                "token": tenant.tokens["field_worker"],
                "screenshotDir": str(artifacts_dir()),
                "timeoutMs": 20_000,
                "bellWaitingFile": str(waiting),
                "progressFile": {"path": str(progress), "name": progress.name, "mimeType": "video/mp4"},
                "retryFile": {"path": str(retry), "name": retry.name, "mimeType": "video/mp4"},
            },
        )
    )
    await wait_for_file(waiting, driver)
    # The server's inbox service, on the server's own loop (its pool and real-time hub live there).
    app_loop = server.server.servers[0].get_loop()
    item = NewItem(
        user_id=user,
        source_key=f"test:{uuid.uuid4()}",
        kind="digest",
        title=ITEM_TITLE,
        body="Mañana 9:00",
        locale="es",
        project_id=project,
    )
    added = asyncio.run_coroutine_threadsafe(
        inbox_for(server.server.config.app.state).add(tenant.tenant_id, [item]), app_loop
    )
    counts = await asyncio.wrap_future(added)
    code, report, stderr = await driver
    summary = {
        k: report.get(k)
        for k in ("steps", "bar", "bellBefore", "bellAfter", "failedRow", "retryRows", "error")
    }
    print(json.dumps(summary, ensure_ascii=False))
    assert code == 0 and report.get("ok"), json.dumps(report, indent=1)[:6000] + stderr[-3000:]

    # The bell went from 0 to the service's count, live, with the item in the open list.
    assert report["bellBefore"] == "0" and counts[user] == 1
    assert report["bellAfter"]["count"] == "1"
    assert report["bellAfter"]["items"] == [ITEM_TITLE] and report["bellAfter"]["unreadItems"] == 1

    # The bar moved: increasing values, at least two different ones short of 100 % (before ready).
    values = [int(v) for v in report["bar"]]
    assert values == sorted(values) and all(0 <= v <= 100 for v in values), values
    assert len({v for v in values if v < 100}) >= 2, values

    # The cancelled upload failed with "aborted"; the retry is a new upload of the same bytes, ready.
    failed_id = uuid.UUID(report["failedRow"]["id"])
    assert report["failedRow"]["badge"] == "Fallida"
    assert report["failedRow"]["reason"] == "La carga se canceló."
    rows = {uuid.UUID(r["id"]): r for r in report["retryRows"]}
    assert len(rows) == 2 and rows[failed_id]["status"] == "failed"
    (retried_id,) = set(rows) - {failed_id}
    assert rows[retried_id]["status"] == "ready" and not rows[retried_id]["retryShown"]
    async with tenant_transaction(pool, tenant.tenant_id, readonly=True) as conn:
        db = {
            r["upload_id"]: r
            for r in await conn.fetch(
                "SELECT upload_id, status, reason_code, size_bytes FROM uploads WHERE upload_id = ANY($1)",
                [failed_id, retried_id],
            )
        }
    assert db[failed_id]["status"] == "failed" and db[failed_id]["reason_code"] == "aborted"
    assert db[retried_id]["status"] == "ready" and db[retried_id]["size_bytes"] == 12 * MIB
    assert "POST /s3/sign" in report["apiRequests"]
    assert any(
        r.startswith("POST /api/v1/uploads/") and r.endswith("/progress") for r in report["apiRequests"]
    )
    assert (artifacts_dir() / "dashboard-live.png").stat().st_size > 10_000
