"""SQL for uploads. Every function takes a connection inside the caller's tenant
transaction (:func:`core.db.tenant_transaction`), so row-level security scopes it.
Status and counters change only through :mod:`core.transition`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from core.upload_view import UPLOAD_COLUMNS, upload_columns


async def insert_upload(
    conn: asyncpg.Connection,
    *,
    upload_id: uuid.UUID,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    uploader_id: uuid.UUID,
    file_name: str,
    declared_type: str,
    size: int,
    key: str,
    multipart_upload_id: str | None,
    part_size: int | None,
    metadata: dict[str, Any],
    declared_sha256: str | None = None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO uploads (upload_id, tenant_id, project_id, uploader_id, file_name, declared_type,
                size_bytes, s3_key, multipart_upload_id, part_size, metadata, declared_sha256, status)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending')
            RETURNING {UPLOAD_COLUMNS}""",
        upload_id,
        tenant_id,
        project_id,
        uploader_id,
        file_name,
        declared_type,
        size,
        key,
        multipart_upload_id,
        part_size,
        metadata,
        declared_sha256,
    )
    assert row is not None
    return row


async def find_multipart(
    conn: asyncpg.Connection, multipart_upload_id: str, key: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    """The caller's tenant's upload with this S3 uploadId *and* key (RLS adds the tenant)."""
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE multipart_upload_id = $1 AND s3_key = $2{lock}",
        multipart_upload_id,
        key,
    )


async def find_by_key(
    conn: asyncpg.Connection, key: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    """The caller's tenant's upload stored under ``key`` (RLS adds the tenant)."""
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE s3_key = $1{lock}", key)


async def bind_multipart(conn: asyncpg.Connection, upload_id: uuid.UUID, multipart_upload_id: str) -> None:
    """S3's UploadId of an upload whose client created the S3 upload itself (``/s3/sign``);
    never replaces one already bound."""
    await conn.execute(
        "UPDATE uploads SET multipart_upload_id = $2, last_activity_at = now() "
        "WHERE upload_id = $1 AND multipart_upload_id IS NULL",
        upload_id,
        multipart_upload_id,
    )


async def get_upload(
    conn: asyncpg.Connection, upload_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1{lock}", upload_id)


async def load_for_status(
    conn: asyncpg.Connection, upload_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record | None:
    """One statement for the status read-through: the row, its derivative kinds and whether
    ``user_id`` is a member of its project."""
    return await conn.fetchrow(
        f"""SELECT {upload_columns("u")},
                   COALESCE((SELECT array_agg(d.kind ORDER BY d.kind) FROM derivatives d
                             WHERE d.upload_id = u.upload_id), '{{}}') AS derivative_kinds,
                   EXISTS (SELECT 1 FROM project_members m
                           WHERE m.project_id = u.project_id AND m.user_id = $2) AS is_member
            FROM uploads u WHERE u.upload_id = $1""",
        upload_id,
        user_id,
    )


async def declare_sha256(conn: asyncpg.Connection, upload_id: uuid.UUID, sha256: str) -> None:
    """The whole file's sha256 given only at complete (no status change; the processors
    compare it). A sha256 declared at create is never replaced."""
    await conn.execute(
        "UPDATE uploads SET declared_sha256 = $2 WHERE upload_id = $1 AND declared_sha256 IS NULL",
        upload_id,
        sha256,
    )


async def touch(conn: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """Activity without a visible change (keeps the stale-upload sweeper away)."""
    await conn.execute("UPDATE uploads SET last_activity_at = now() WHERE upload_id = $1", upload_id)


async def delete_derivatives(conn: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """The derivative rows of a deleted upload (their objects are gone from S3)."""
    await conn.execute("DELETE FROM derivatives WHERE upload_id = $1", upload_id)


async def derivative_kinds(conn: asyncpg.Connection, upload_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT kind FROM derivatives WHERE upload_id = $1 ORDER BY kind", upload_id)
    return [r["kind"] for r in rows]


async def list_project_uploads(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (created_at, upload_id); ``deleted`` uploads are gone."""
    columns = upload_columns("u")
    kinds = (
        "COALESCE((SELECT array_agg(d.kind ORDER BY d.kind) FROM derivatives d "
        "WHERE d.upload_id = u.upload_id), '{}') AS derivative_kinds"
    )
    if after is None:
        return list(
            await conn.fetch(
                f"SELECT {columns}, {kinds} FROM uploads u WHERE u.project_id = $1 AND u.status <> 'deleted' "
                "ORDER BY u.created_at DESC, u.upload_id DESC LIMIT $2",
                project_id,
                limit,
            )
        )
    return list(
        await conn.fetch(
            f"SELECT {columns}, {kinds} FROM uploads u WHERE u.project_id = $1 AND u.status <> 'deleted' "
            "AND (u.created_at, u.upload_id) < ($3, $4) "
            "ORDER BY u.created_at DESC, u.upload_id DESC LIMIT $2",
            project_id,
            limit,
            after[0],
            after[1],
        )
    )


async def stale_uploads(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE status IN ('pending', 'uploading') "
            "AND last_activity_at < $1 ORDER BY last_activity_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            cutoff,
            limit,
        )
    )
