"""Applying an upload event to the upload's row: dedupe by event id, move the status
forward only, write the new document through to the status cache and hand it to the
publisher, all in one tenant transaction (a failed publish rolls back the dedupe record, so
the message is retried). The events consumer (:mod:`server.realtime.consumer`) feeds it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.db import tenant_transaction
from core.events import Event
from core.publish import EventPublisher
from core.status import ReasonCode, UploadStatus, can_transition
from core.upload_view import UPLOAD_COLUMNS, upload_document
from server import metrics
from server.status_cache import StatusCache

log = logging.getLogger(__name__)

CONSUMER = "hub"
PROBE_TIMEOUT = 2.0


class UploadNotFound(LookupError):
    pass


def _reason(event: Event) -> str | None:
    if event.status not in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        return None
    raw = event.data.get("reason_code", event.data.get("reason"))
    try:
        return ReasonCode(str(raw)).value
    except ValueError:
        return ReasonCode.INFECTED.value if event.status is UploadStatus.QUARANTINED else None


@dataclass
class EventApplier:
    """Applies one event; returns the upload document it published, or ``None``."""

    pool: asyncpg.Pool
    cache: StatusCache
    publisher: EventPublisher

    async def probe(self) -> None:
        """Raise unless PostgreSQL answers."""
        async with self.pool.acquire(timeout=PROBE_TIMEOUT) as conn:
            await conn.fetchval("SELECT 1")

    async def apply(self, event: Event) -> dict[str, Any] | None:
        async with tenant_transaction(self.pool, event.tenant_id) as conn:
            fresh = await conn.fetchval(
                "INSERT INTO processed_events (tenant_id, consumer, event_id) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                event.tenant_id,
                CONSUMER,
                event.id,
            )
            if not fresh:
                log.info("event already applied", extra={"event_id": str(event.id)})
                return None
            row = await conn.fetchrow(
                f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1 FOR UPDATE", event.upload_id
            )
            if row is None or row["project_id"] != event.project_id:
                raise UploadNotFound(f"upload {event.upload_id} not in project {event.project_id}")
            if can_transition(row["status"], event.status):
                reason = _reason(event)
                row = await conn.fetchrow(
                    f"UPDATE uploads SET status = $2, reason_code = COALESCE($3, reason_code), "
                    f"version = version + 1, updated_at = now(), last_activity_at = now() "
                    f"WHERE upload_id = $1 RETURNING {UPLOAD_COLUMNS}",
                    event.upload_id,
                    event.status.value,
                    reason,
                )
                assert row is not None
            elif row["status"] != event.status.value:
                log.info(
                    "stale event ignored",
                    extra={"event_id": str(event.id), "status": event.status.value, "current": row["status"]},
                )
                return None
            kinds = [
                r["kind"]
                for r in await conn.fetch(
                    "SELECT kind FROM derivatives WHERE upload_id = $1", event.upload_id
                )
            ]
            document = upload_document(row, kinds)
            await self.cache.put(event.tenant_id, document)
            await self.publisher.publish(event, document)
        # Counted once per event (ids are deduplicated), after the commit, whichever part
        # wrote the status first (the processors usually have).
        metrics.UPLOADS_BY_STATUS.labels(event.status.value, _reason(event) or "").inc()
        return document
