"""Native upload routes under ``/api/v1``: project listing and progress reports."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.db import tenant_transaction
from core.status import UploadStatus
from core.transition import Progress, record_progress, transition
from core.upload_view import upload_document
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate, parse_uuid, require_project_access
from server.uploads import store
from server.uploads.access import json_body, native_errors, require_owner
from server.uploads.context import changes, uploads

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(created_at: datetime, upload_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{upload_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None:
            raise ValueError("naive")
        return created, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        # opaque: the document cannot check it, so the page it names does not exist (404)
        raise ApiError(404, "invalid_cursor", "cursor is not one this API returned") from None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"limit must be an integer between 1 and {MAX_LIMIT}", "invalid_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be an integer between 1 and {MAX_LIMIT}", "invalid_limit")
    return limit


@native_errors
async def project_uploads(request: Request) -> Response:
    """``GET /api/v1/projects/{project_id}/uploads?limit=&cursor=`` newest first."""
    principal = await authenticate(request)
    project_id = parse_uuid(request.path_params["project_id"], "project")
    limit = parse_limit(request.query_params.get("limit"))
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        await require_project_access(conn, principal, project_id)
        rows = await store.list_project_uploads(conn, project_id, limit=limit + 1, after=after)
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["upload_id"]) if len(rows) > limit and page else None
    )
    return JSONResponse(
        {
            "items": [upload_document(r, list(r["derivative_kinds"])) for r in page],
            "next_cursor": next_cursor,
        }
    )


def _non_negative_int(body: dict[str, object], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"{name} must be a non-negative integer", "invalid_progress")
    return value


@native_errors
async def report_progress(request: Request) -> Response:
    """``POST /api/v1/uploads/{upload_id}/progress`` ``{bytes_done, parts_done?}``."""
    principal = await authenticate(request)
    upload_id = parse_uuid(request.path_params["upload_id"], "upload")
    body = await json_body(request)
    bytes_done = _non_negative_int(body, "bytes_done", required=True)
    parts_done = _non_negative_int(body, "parts_done", required=False)
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await store.get_upload(conn, upload_id, for_update=True)
        if row is None:
            raise not_found("upload")
        require_owner(principal, row)
        if row["status"] not in (UploadStatus.PENDING, UploadStatus.UPLOADING):
            raise ApiError(409, "upload_not_in_progress", f"the upload is {row['status']}")
        limit = row["size_bytes"] or ctx.settings.max_upload_bytes
        if bytes_done is not None and bytes_done > limit:
            raise bad_request(f"bytes_done is larger than the file ({limit} bytes)", "invalid_progress")
        progress = Progress(parts_done=parts_done, bytes_done=bytes_done)
        moved = await transition(conn, upload_id, UploadStatus.UPLOADING, progress=progress)
        counted = None if moved is not None else await record_progress(conn, upload_id, progress)
        if moved is None and counted is None:
            await store.touch(conn, upload_id)
    after = changes(request)
    if moved is not None:
        document, published = await after.changed(moved), True
    else:
        document, published = await after.progressed(counted if counted is not None else row)
    return JSONResponse({**document, "published": published})
