"""The live dashboard in a real browser: Debian's Chromium driven by playwright-core
loads the page, uploads a JPEG through the stock Uppy 6.3 Dashboard (AwsS3 in ``signRequest``
mode: POST /s3/sign, then S3 directly), and watches the row go live to "Lista" with its thumbnail,
through the stock centrifuge SDK on the real hub. The screenshot is saved as
``test-artifacts/dashboard.png``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from PIL import Image, ImageDraw

from core.db import tenant_transaction
from core.settings import Settings
from server.auth import mint_token
from tests.browser.conftest import Pipeline, artifacts_dir
from tests.conftest import create_tenant_fixture

HERE = Path(__file__).parent
# HTML in a file name must show as text (the server keeps the name as given).
FILE_NAME = 'Fachada <img src=x onerror=alert(1)> norte & "sur".jpg'
BROKEN_NAME = "Losa rota.jpg"
BROWSER_TIMEOUT_MS = 45_000
REASONS_ES = {
    "corrupt": "El archivo está dañado o no se puede leer.",
    "type_mismatch": "El contenido no coincide con el tipo de archivo declarado.",
    "processing_failed": "Ocurrió un error al procesar el archivo.",
}


def site_photo() -> bytes:
    """A 1200x900 JPEG: sky, a building with windows, ground."""
    img = Image.new("RGB", (1200, 900), (135, 190, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 700, 1200, 900), fill=(120, 100, 80))
    draw.rectangle((300, 200, 900, 700), fill=(200, 90, 40))
    for row in range(4):
        for col in range(5):
            x, y = 340 + col * 110, 240 + row * 110
            draw.rectangle((x, y, x + 70, y + 70), fill=(240, 240, 210))
    draw.rectangle((950, 100, 980, 700), fill=(250, 200, 0))  # a crane
    draw.rectangle((700, 100, 1150, 130), fill=(250, 200, 0))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=88)
    return out.getvalue()


async def run_driver(script: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """Run a Node driver (it prints one JSON report) without blocking the event loop,
    where the worker is running."""
    node = shutil.which("node")
    assert node
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HERE / script),
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT_MS / 1000 + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode().strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    return proc.returncode or 0, report, err.decode()


def broken_jpeg() -> bytes:
    """JPEG magic bytes, then garbage: the scan is clean, decoding fails."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40


async def test_uploads_go_live_to_ready_with_thumbnail_or_failed_with_reason(
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
    server = live_server(settings_override=settings)  # run_components: hub + events consumer
    photo, broken = tmp_path / "obra.jpg", tmp_path / "rota.jpg"
    photo.write_bytes(site_photo())
    broken.write_bytes(broken_jpeg())
    screenshot = artifacts_dir() / "dashboard.png"
    screenshot.unlink(missing_ok=True)

    code, report, stderr = await run_driver(
        "dashboard.mjs",
        {
            "url": server.url,
            "projectId": str(project),
            "token": tenant.tokens["field_worker"],
            "screenshot": str(screenshot),
            "timeoutMs": BROWSER_TIMEOUT_MS,
            "openName": FILE_NAME,
            "deleteName": BROKEN_NAME,
            "files": [
                {"path": str(photo), "name": FILE_NAME, "mimeType": "image/jpeg", "expect": "ready"},
                {"path": str(broken), "name": BROKEN_NAME, "mimeType": "image/jpeg", "expect": "failed"},
            ],
        },
    )
    keys = ("steps", "statuses", "rows", "pushes", "bell", "projects", "console", "error", "totalMs")
    summary = {k: report.get(k) for k in keys}
    print(json.dumps(summary, ensure_ascii=False))
    assert code == 0 and report.get("ok"), json.dumps(report, indent=1)[:6000] + stderr[-3000:]

    # Spanish page, token gone from the address bar, live connection.
    assert report["lang"] == "es"
    assert report["heading"] == "Cargas del proyecto"
    assert "token=" not in report["addressBar"]
    assert report["connection"] == "En vivo"
    # The project picker names the user's projects (GET /api/v1/me), the current one chosen.
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        project_name = await conn.fetchval("SELECT name FROM projects WHERE project_id = $1", project)
    assert report["projects"] == [{"id": str(project), "name": project_name, "selected": True}]
    assert report["title"].startswith(project_name)
    assert report["count"] == "2 archivos"
    assert report["uppyComplete"] is True
    # Uppy 6 in signRequest mode: every S3 request signed by POST /s3/sign, no Companion route.
    api = report["apiRequests"]
    assert "POST /s3/sign" in api and not any(
        r.split(" ")[1].startswith("/s3/") and r != "POST /s3/sign" for r in api
    ), api

    # The photo went live all the way to "Lista"; its thumbnail is the derived thumb-200.
    ready = report["rows"][FILE_NAME]
    assert ready["status"] == "ready" and ready["badge"] == "Lista"
    assert ready["reason"] is None
    assert ready["thumbnail"]["naturalWidth"] == 200 and 0 < ready["thumbnail"]["naturalHeight"] <= 200
    assert ready["details"].endswith("KB · image/jpeg"), ready["details"]
    seen = report["statuses"][FILE_NAME]
    assert seen[-1] == "ready" and len(seen) >= 2, seen  # listed before ready, then updated live
    # The broken one failed, with its reason in Spanish.
    failed = report["rows"][BROKEN_NAME]
    assert failed["status"] == "failed" and failed["badge"] == "Fallida"
    assert failed["reason"] and not failed["reason"].startswith("Motivo:"), failed["reason"]
    assert failed["thumbnail"] is None

    # Both outcomes arrived as publications over the page's WebSocket (the page never polls).
    pushed = {(p["upload_id"], p["status"]) for p in report["pushes"]}
    assert (ready["id"], "ready") in pushed and (failed["id"], "failed") in pushed, report["pushes"]

    # Escaping: the name is text, no element was injected, no script ran.
    assert ready["nameChildElements"] == 0
    assert ready["thumbnail"]["alt"] == FILE_NAME
    assert report["dialogs"] == [] and report["pageErrors"] == []
    assert [m for m in report["console"] if m.startswith("error")] == [], report["console"]
    assert screenshot.stat().st_size > 10_000

    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        db = await conn.fetchrow(
            "SELECT status, file_name, size_bytes FROM uploads WHERE upload_id = $1", uuid.UUID(ready["id"])
        )
        kinds = await conn.fetch("SELECT kind FROM derivatives WHERE upload_id = $1", uuid.UUID(ready["id"]))
    assert db is not None and db["status"] == "ready" and db["file_name"] == FILE_NAME
    assert db["size_bytes"] == photo.stat().st_size  # Uppy sent the size in the file meta
    assert {"thumb-200", "thumb-800"} <= {k["kind"] for k in kinds}
    assert failed["reason"] in REASONS_ES.values()  # its row is deleted below (the reason goes with it)

    # The bell shows the inbox's unread count and items (issue 15's API), as the API answers them.
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.auth("field_worker")) as http:
        inbox = (await http.get("/api/v1/me/notifications", params={"limit": 20})).json()
    assert report["bell"]["count"] == str(inbox["unread"])
    assert report["bell"]["items"] == [item["title"] for item in inbox["items"]]

    # Opening the ready file downloads exactly its bytes; the deleted one leaves the live list.
    assert report["downloaded"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert report["downloaded"]["size"] == photo.stat().st_size
    assert report["afterDelete"] == {"count": "1 archivo", "connection": "En vivo", "rows": 1}
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        gone = await conn.fetchval("SELECT status FROM uploads WHERE upload_id = $1", uuid.UUID(failed["id"]))
    assert gone == "deleted"


async def test_sign_in_roles_and_errors_in_the_browser(
    dashboard_bundle: Path, chromium: Path, live_server: Any, pool: asyncpg.Pool, dash_settings: Settings
) -> None:
    settings = dash_settings
    tenant = await create_tenant_fixture(pool, settings)
    server = live_server(settings_override=settings)
    expired = mint_token(
        settings,
        user_id=tenant.users["field_worker"],
        tenant_id=tenant.tenant_id,
        role="field_worker",
        ttl_seconds=-60,
    )
    code, report, stderr = await run_driver(
        "access.mjs",
        {
            "url": server.url,
            "timeoutMs": 20_000,
            "screenshot": str(artifacts_dir() / "dashboard-login.png"),
            "member": {"projectId": str(tenant.projects[0]), "token": tenant.tokens["field_worker"]},
            "outsideProject": str(tenant.projects[1]),
            "investorToken": tenant.tokens["investor"],
            "expiredToken": expired,
        },
    )
    assert code == 0 and report.get("ok"), json.dumps(report, indent=1)[:6000] + stderr[-3000:]
    assert report["loginHeading"] == "Ingresar al panel de cargas"
    assert report["badProject"] == "El identificador del proyecto no es válido."
    assert report["badToken"] == "Falta el token de acceso."
    assert report["outsider"] == "No tienes acceso a este proyecto."
    assert report["investor"]["uploader"] == 0
    assert report["investor"]["note"] == "Tu rol solo permite ver las cargas de este proyecto."
    assert report["investor"]["empty"].startswith("Todavía no hay archivos")
    assert report["expired"] == "Tu sesión expiró o el token no es válido. Vuelve a ingresar."
    assert "token=" not in report["addressBar"]
    assert report["english"] == "Sign in to the uploads dashboard"
    assert report["pageErrors"] == [] and report["dialogs"] == []
