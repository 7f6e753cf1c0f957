"""The one server-side step after a change to an upload row (DESIGN §3, issue 12).

Every writer on the server moves a status with :func:`core.transition.transition` and then
calls :meth:`UploadChanges.changed`, which does everything that follows a status change —
the new document written through to the status cache, the status metric, the event to the
hub — and nothing else does those. Status changes are never throttled. Progress without a
status change goes through :meth:`UploadChanges.progressed`, the only throttled event
(``upload.progress``, at most once a second per upload across every server instance).

The processors (Lambdas, no server) announce their own changes through the outbox and SNS;
the events consumer's applier calls :meth:`changed` for them, once per announcing event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.events import Event, EventType
from core.publish import EventPublisher
from core.status import UploadStatus
from core.upload_view import upload_document
from server import metrics
from server.redis_client import RedisClient
from server.status_cache import StatusCache

PROGRESS_INTERVAL_MS = 1000


def throttle_key(upload_id: uuid.UUID | str) -> str:
    return f"bp:progress-throttle:{upload_id}"


class ProgressThrottle:
    """At most one ``upload.progress`` event per upload per interval, across every server
    instance (Redis ``SET NX PX``). Never applied to status changes."""

    def __init__(self, redis: RedisClient, interval_ms: int = PROGRESS_INTERVAL_MS) -> None:
        self.redis = redis
        self.interval_ms = interval_ms

    async def allow(self, upload_id: uuid.UUID | str) -> bool:
        return bool(await self.redis.set(throttle_key(upload_id), b"1", nx=True, px=self.interval_ms))

    async def mark(self, upload_id: uuid.UUID | str) -> None:
        """A status change was just published (with the counters): it stands for this
        interval's progress event."""
        await self.redis.set(throttle_key(upload_id), b"1", px=self.interval_ms)


def _event(kind: EventType, row: Mapping[str, Any], data: dict[str, Any]) -> Event:
    return Event.new(
        kind,
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        upload_id=row["upload_id"],
        user_id=row["uploader_id"],
        status=UploadStatus(row["status"]),
        data=data,
    )


def progress_event(row: Mapping[str, Any], **extra: Any) -> Event:
    return _event(
        EventType.UPLOAD_PROGRESS,
        row,
        {
            "parts_done": row["parts_done"],
            "bytes_done": row["bytes_done"],
            "size": row["size_bytes"],
            **extra,
        },
    )


def status_event(row: Mapping[str, Any], **extra: Any) -> Event:
    """The hub event of a status change this server made (``row`` is the changed row)."""
    status = UploadStatus(row["status"])
    if status in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        return _event(
            EventType.UPLOAD_FAILED,
            row,
            {"reason": row["reason_code"], "file_name": row["file_name"], **extra},
        )
    if status is UploadStatus.DELETED:
        return _event(EventType.UPLOAD_DELETED, row, {"file_name": row["file_name"], **extra})
    if status is UploadStatus.READY:
        return _event(EventType.PROCESSING_COMPLETED, row, {"file_name": row["file_name"], **extra})
    return progress_event(row, **extra)


@dataclass(frozen=True, slots=True)
class UploadChanges:
    """Components get it in their constructors: ``UploadChanges(cache, publisher, throttle)``."""

    cache: StatusCache
    publisher: EventPublisher
    throttle: ProgressThrottle | None = None

    async def changed(
        self,
        row: Mapping[str, Any],
        *,
        event: Event | None = None,
        derivatives: list[str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """After a status change (``row`` is the new row, :data:`core.upload_view.UPLOAD_COLUMNS`):
        cache write-through, publish ``event`` (default :func:`status_event`, with ``extra`` in
        its data) unthrottled, count the change. Returns the new upload document."""
        document = await self.stored(row, derivatives)
        await self.publisher.publish(event or status_event(row, **extra), document)
        metrics.UPLOADS_BY_STATUS.labels(str(row["status"]), row["reason_code"] or "").inc()
        if self.throttle is not None and row["status"] == UploadStatus.UPLOADING:
            await self.throttle.mark(row["upload_id"])
        return document

    async def relayed(
        self, row: Mapping[str, Any], event: Event, *, derivatives: list[str] | None = None
    ) -> dict[str, Any]:
        """An event about the upload that announces no status change of its own (e.g. the
        processors' ``upload.completed``): cache write-through and publish, not counted."""
        document = await self.stored(row, derivatives)
        await self.publisher.publish(event, document)
        return document

    async def progressed(self, row: Mapping[str, Any], **extra: Any) -> tuple[dict[str, Any], bool]:
        """After counters moved without a status change: cache write-through, and an
        ``upload.progress`` event when the throttle allows. Returns (document, published)."""
        document = await self.stored(row)
        if self.throttle is not None and not await self.throttle.allow(row["upload_id"]):
            return document, False
        await self.publisher.publish(progress_event(row, **extra), document)
        return document, True

    async def stored(self, row: Mapping[str, Any], derivatives: list[str] | None = None) -> dict[str, Any]:
        """The document written through to the status cache, without an event: for a row
        that was created (``pending`` is not a change) or re-read."""
        document = upload_document(row, derivatives)
        await self.cache.put(row["tenant_id"], document)
        return document
