"""The public JSON document of an upload: what `GET /api/v1/uploads/{id}` returns, what
the status cache holds and what status publications carry."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

# THE column list of the uploads table: every statement that reads or returns upload rows
# (API, transition, event applier, processors, sweepers) selects exactly these. A new column
# is added here once.
UPLOAD_COLUMNS = (
    "upload_id, tenant_id, project_id, uploader_id, file_name, declared_type, sniffed_type, "
    "size_bytes, status, reason_code, parts_done, bytes_done, sha256, metadata, version, "
    "created_at, updated_at, s3_key, multipart_upload_id, part_size, last_activity_at, "
    "declared_sha256, sha256_verified, scanned_version_id, scanned_etag"
)


def upload_columns(alias: str) -> str:
    """:data:`UPLOAD_COLUMNS` qualified with a table alias (``u.upload_id, u.tenant_id, ...``)."""
    return ", ".join(f"{alias}.{c.strip()}" for c in UPLOAD_COLUMNS.split(","))


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def upload_document(row: Mapping[str, Any], derivatives: list[str] | None = None) -> dict[str, Any]:
    """``row`` has at least :data:`UPLOAD_COLUMNS`. ``derivatives`` are the kinds that
    exist; they are listed only once the upload is ``ready``."""
    status = row["status"]
    return {
        "id": str(row["upload_id"]),
        "project_id": str(row["project_id"]),
        "uploader_id": str(row["uploader_id"]),
        "file_name": row["file_name"],
        "declared_type": row["declared_type"],
        "sniffed_type": row["sniffed_type"],
        "size": row["size_bytes"],
        "status": status,
        "reason": row["reason_code"],
        "parts_done": row["parts_done"],
        "bytes_done": row["bytes_done"],
        "sha256": row["sha256"],
        "declared_sha256": row.get("declared_sha256"),
        "sha256_verified": row.get("sha256_verified"),
        "metadata": row["metadata"] or {},
        "version": row["version"],
        "derivatives": sorted(derivatives or []) if status == "ready" else [],
        "created_at": _ts(row["created_at"]),
        "updated_at": _ts(row["updated_at"]),
    }
