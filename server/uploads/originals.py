"""Serving and removing originals (issue 12).

``GET /api/v1/uploads/{id}/original`` answers a short-lived presigned GET of exactly the
version the processors scanned (``versionId`` in the URL), with the file's own name in a
UTF-8 ``Content-Disposition``; only for a ``ready`` upload the caller may read, 404 for
anything else (another tenant, a non-member, not ready yet, deleted).

``DELETE /api/v1/uploads/{id}`` (its uploader or an admin) removes every version of the
original and of the derivatives from S3 and moves the upload to the terminal ``deleted``.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.db import tenant_transaction
from core.keys import upload_prefix
from core.status import UploadStatus
from core.transition import transition
from server.errors import not_found
from server.permissions import authenticate, parse_uuid
from server.uploads import s3ops, store
from server.uploads.access import native_errors, require_owner
from server.uploads.context import changes, uploads

# Shown in the browser only for types a browser renders without running anything from them
# (no SVG, no HTML): everything else is always an attachment.
INLINE_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/gif", "image/webp"})


def _ascii_fallback(name: str) -> str:
    """The plain ``filename=`` for clients without RFC 6266 ``filename*``."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = "".join(ch if ch.isprintable() and ch not in '"\\;' else "_" for ch in folded).strip()
    return cleaned or "download"


def content_disposition(file_name: str, *, inline: bool) -> str:
    """``attachment; filename="…"; filename*=UTF-8''…`` (RFC 6266 / RFC 8187)."""
    kind = "inline" if inline else "attachment"
    encoded = quote(file_name, safe="")
    return f"{kind}; filename=\"{_ascii_fallback(file_name)}\"; filename*=UTF-8''{encoded}"


def served_type(row: Mapping[str, Any]) -> str:
    return str(row["sniffed_type"] or row["declared_type"])


@native_errors
async def download_original(request: Request) -> Response:
    """``GET /api/v1/uploads/{upload_id}/original[?inline=1]`` → ``{url, expires_in, ...}``."""
    principal = await authenticate(request)
    upload_id = parse_uuid(request.path_params["upload_id"], "upload")
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id, readonly=True) as conn:
        row = await store.load_for_status(conn, upload_id, principal.user_id)
    # One answer for "not yours", "not ready" and "gone": nothing to learn from probing.
    if row is None or not (principal.is_admin or row["is_member"]) or row["status"] != UploadStatus.READY:
        raise not_found("upload")
    mime = served_type(row)
    inline = request.query_params.get("inline") in ("1", "true") and mime in INLINE_TYPES
    disposition = content_disposition(row["file_name"], inline=inline)
    expires = ctx.settings.download_expiry_seconds
    url = ctx.presigner.get_object(
        row["s3_key"],
        row["scanned_version_id"],
        disposition=disposition,
        content_type=mime,
        expires=expires,
    )
    return JSONResponse(
        {
            "url": url,
            "expires_in": expires,
            "file_name": row["file_name"],
            "content_type": mime,
            "content_disposition": disposition,
            "version_id": row["scanned_version_id"],
            "sha256": row["sha256"],
        },
        headers={"Cache-Control": "no-store"},
    )


async def delete_objects_under(s3: Any, bucket: str, prefix: str) -> int:
    """Every version and delete marker under ``prefix`` (the upload's folder: the original
    and its derivatives), in batches of 1,000. Returns how many were removed."""
    removed = 0
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = await s3.list_object_versions(**kwargs)
        targets = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(targets), 1000):
            batch = targets[start : start + 1000]
            answer = await s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                raise RuntimeError(f"S3 refused to delete {len(errors)} object(s): {errors[0]}")
            removed += len(batch)
        if not page.get("IsTruncated"):
            return removed
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")


@native_errors
async def delete_upload(request: Request) -> Response:
    """``DELETE /api/v1/uploads/{upload_id}`` → 204. The uploader or an admin; an investor
    (or another field worker) 403, another tenant's id or a deleted upload 404."""
    principal = await authenticate(request)
    upload_id: uuid.UUID = parse_uuid(request.path_params["upload_id"], "upload")
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await store.get_upload(conn, upload_id, for_update=True)
        if row is None or row["status"] == UploadStatus.DELETED:
            raise not_found("upload")
        require_owner(principal, row)
        # The row stays locked until the objects are gone: a failure in S3 rolls it back,
        # and a retry finds the upload as it was.
        moved = await transition(conn, upload_id, UploadStatus.DELETED)
        if moved is None:  # the lock makes this unreachable; keep the answer honest anyway
            raise not_found("upload")
        if row["multipart_upload_id"] and row["status"] in (UploadStatus.PENDING, UploadStatus.UPLOADING):
            await s3ops.abort(ctx.s3, ctx.bucket, row["s3_key"], row["multipart_upload_id"])
        await delete_objects_under(
            ctx.s3, ctx.bucket, upload_prefix(row["tenant_id"], row["project_id"], upload_id)
        )
        await store.delete_derivatives(conn, upload_id)
    await changes(request).changed(moved)
    return Response(status_code=204)
