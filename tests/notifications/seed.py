"""Rows seeded straight into the database (the uploads API belongs to another issue)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from core.db import tenant_transaction
from core.events import Event, EventType
from core.keys import derived_key, original_key
from core.status import UploadStatus


async def seed_upload(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    uploader_id: uuid.UUID,
    *,
    file_name: str = "foto.jpg",
    declared_type: str = "image/jpeg",
    status: str = "ready",
    reason: str | None = None,
    created_at: datetime | None = None,
    thumb: bool | None = None,
) -> uuid.UUID:
    upload_id = uuid.uuid4()
    when = created_at or datetime.now(UTC)
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO uploads (tenant_id, upload_id, project_id, uploader_id, file_name, declared_type, "
            "  size_bytes, s3_key, status, reason_code, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, 1234, $7, $8, $9, $10, $10)",
            tenant_id,
            upload_id,
            project_id,
            uploader_id,
            file_name,
            declared_type,
            original_key(tenant_id, project_id, upload_id, file_name),
            status,
            reason,
            when,
        )
        if thumb if thumb is not None else (status == "ready" and declared_type.startswith("image/")):
            await conn.execute(
                "INSERT INTO derivatives (tenant_id, upload_id, kind, s3_key, mime_type, width, height) "
                "VALUES ($1, $2, 'thumb-200', $3, 'image/jpeg', 200, 150)",
                tenant_id,
                upload_id,
                derived_key(tenant_id, project_id, upload_id, "thumb-200.jpg"),
            )
    return upload_id


def event_for(
    kind: EventType,
    tenant_id: uuid.UUID,
    project_id: uuid.UUID,
    upload_id: uuid.UUID,
    user_id: uuid.UUID,
    status: UploadStatus,
    reason: str | None = None,
) -> Event:
    data: dict[str, object] = {"file_name": "x"}
    if reason:
        data["reason"] = reason
    return Event.new(
        kind,
        tenant_id=tenant_id,
        project_id=project_id,
        upload_id=upload_id,
        user_id=user_id,
        status=status,
        data=data,
    )


async def add_device(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    platform: str = "android",
    locale: str | None = None,
) -> str:
    token = f"tok-{uuid.uuid4().hex}"
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO device_tokens (tenant_id, user_id, token, platform, locale) "
            "VALUES ($1, $2, $3, $4, $5)",
            tenant_id,
            user_id,
            token,
            platform,
            locale,
        )
    return token
