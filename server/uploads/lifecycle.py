"""What follows a change to an upload row: the new document goes to the status cache
(write-through) and, at most once a second per upload, an event to the real-time hub."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from core.events import Event, EventType
from core.publish import EventPublisher
from core.status import UploadStatus
from core.upload_view import upload_document
from server import metrics
from server.status_cache import StatusCache

PROGRESS_INTERVAL_MS = 1000


def throttle_key(upload_id: uuid.UUID | str) -> str:
    return f"bp:progress-throttle:{upload_id}"


class ProgressThrottle:
    """At most one event per upload per interval, across every server instance
    (Redis ``SET NX PX``)."""

    def __init__(self, redis: Redis, interval_ms: int = PROGRESS_INTERVAL_MS) -> None:
        self.redis = redis
        self.interval_ms = interval_ms

    async def allow(self, upload_id: uuid.UUID | str) -> bool:
        return bool(await self.redis.set(throttle_key(upload_id), b"1", nx=True, px=self.interval_ms))


async def write_through(
    cache: StatusCache, row: Mapping[str, Any], derivatives: list[str] | None = None
) -> dict[str, Any]:
    document = upload_document(row, derivatives)
    await cache.put(row["tenant_id"], document)
    return document


def progress_event(row: Mapping[str, Any], **extra: Any) -> Event:
    return Event.new(
        EventType.UPLOAD_PROGRESS,
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        upload_id=row["upload_id"],
        user_id=row["uploader_id"],
        status=UploadStatus(row["status"]),
        data={
            "parts_done": row["parts_done"],
            "bytes_done": row["bytes_done"],
            "size": row["size_bytes"],
            **extra,
        },
    )


def failed_event(row: Mapping[str, Any]) -> Event:
    return Event.new(
        EventType.UPLOAD_FAILED,
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        upload_id=row["upload_id"],
        user_id=row["uploader_id"],
        status=UploadStatus.FAILED,
        data={"reason": row["reason_code"], "file_name": row["file_name"]},
    )


async def publish_progress(
    throttle: ProgressThrottle, publisher: EventPublisher, row: Mapping[str, Any], **extra: Any
) -> bool:
    if not await throttle.allow(row["upload_id"]):
        return False
    await publisher.publish(progress_event(row, **extra))
    return True


def count_status_change(status: str, reason: str | None) -> None:
    metrics.UPLOADS_BY_STATUS.labels(status, reason or "").inc()
