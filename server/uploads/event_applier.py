"""Applying an upload event to the upload's row: dedupe by event id, move the status
forward only (:func:`core.transition.transition`), then the one after-a-change step
(:class:`server.uploads.changes.UploadChanges`: status cache, metric, hub), all in one
tenant transaction (a failed publish rolls back the dedupe record, so the message is
retried): :func:`core.db.plain_tenant_transaction`, plain statements only. The events
consumer (:mod:`server.realtime.consumer`) feeds it.

The processors change the status themselves and announce it with the event; so an event
whose status the row already has is that change's announcement: it is published, and
counted when its type announces a status change (``processing.completed``,
``upload.failed``: the processors emit one per change they make). An event the row is
already past is stale and dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.db import plain_tenant_transaction
from core.events import Event, EventType
from core.publish import EventPublisher
from core.status import ReasonCode, UploadStatus
from core.transition import guarded_update, transition_args
from core.upload_view import UPLOAD_COLUMNS
from server.status_cache import StatusCache
from server.uploads.changes import UploadChanges

log = logging.getLogger(__name__)

CONSUMER = "hub"
PROBE_TIMEOUT = 2.0
# Event types the processors emit exactly once per status change they make.
ANNOUNCES_CHANGE = frozenset({EventType.PROCESSING_COMPLETED, EventType.UPLOAD_FAILED})


# One statement for an event that moves its upload: the dedupe record (``fresh``: the event
# is new) and, when it is new, the guarded UPDATE of core.transition (the row locked by it;
# all NULL when nothing moved). Parameters $1-$9: core.transition.transition_args.
_DEDUPE_AND_MOVE = f"""WITH fresh AS (
      INSERT INTO processed_events (tenant_id, consumer, event_id) VALUES ($10, $11, $12)
      ON CONFLICT DO NOTHING RETURNING 1
    ), moved AS (
      {guarded_update("AND project_id = $13 AND EXISTS (SELECT 1 FROM fresh)")}
    )
    SELECT EXISTS (SELECT 1 FROM fresh) AS fresh, moved.*
    FROM (SELECT 1) AS one LEFT JOIN moved ON true"""
# The same dedupe record and, when the event is new, the row locked (all NULL when the upload
# is not in this tenant): for an event that cannot move a status (``deleted``).
_DEDUPE_AND_LOCK = f"""WITH fresh AS (
      INSERT INTO processed_events (tenant_id, consumer, event_id) VALUES ($1, $2, $3)
      ON CONFLICT DO NOTHING RETURNING 1
    ), locked AS (
      SELECT {UPLOAD_COLUMNS} FROM uploads
      WHERE upload_id = $4 AND EXISTS (SELECT 1 FROM fresh)
      FOR UPDATE
    )
    SELECT EXISTS (SELECT 1 FROM fresh) AS fresh, locked.*
    FROM (SELECT 1) AS one LEFT JOIN locked ON true"""
_LOCK = f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1 FOR UPDATE"


class UploadNotFound(LookupError):
    pass


def _reason(event: Event) -> str | None:
    if event.status not in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        return None
    raw = event.data.get("reason_code", event.data.get("reason"))
    try:
        return ReasonCode(str(raw)).value
    except ValueError:
        if event.status is UploadStatus.QUARANTINED:
            return ReasonCode.INFECTED.value
        return ReasonCode.PROCESSING_FAILED.value


@dataclass
class EventApplier:
    """Applies one event; returns the upload document it published, or ``None``."""

    pool: asyncpg.Pool
    cache: StatusCache
    publisher: EventPublisher

    @property
    def changes(self) -> UploadChanges:
        return UploadChanges(self.cache, self.publisher)

    async def probe(self) -> None:
        """Raise unless PostgreSQL answers."""
        async with self.pool.acquire(timeout=PROBE_TIMEOUT) as conn:
            await conn.fetchval("SELECT 1")

    async def apply(self, event: Event) -> dict[str, Any] | None:
        async with plain_tenant_transaction(self.pool, event.tenant_id) as conn:
            moves = None
            if event.status is not UploadStatus.DELETED:
                moves = transition_args(event.upload_id, event.status, reason=_reason(event))
            if moves is not None:  # dedupe and the move in one statement
                first = await conn.fetchrow(
                    _DEDUPE_AND_MOVE, *moves, event.tenant_id, CONSUMER, event.id, event.project_id
                )
                row = None  # not read yet
            else:
                first = row = await conn.fetchrow(
                    _DEDUPE_AND_LOCK, event.tenant_id, CONSUMER, event.id, event.upload_id
                )
            assert first is not None  # one row, always
            if not first["fresh"]:
                log.info("event already applied", extra={"event_id": str(event.id)})
                return None
            moved = first if moves is not None and first["upload_id"] is not None else None
            if moved is None:
                if row is None:  # it did not move: the row as it is now, locked
                    row = await conn.fetchrow(_LOCK, event.upload_id)
                if row is None or row["upload_id"] is None or row["project_id"] != event.project_id:
                    raise UploadNotFound(f"upload {event.upload_id} not in project {event.project_id}")
                if event.status is UploadStatus.DELETED:
                    # Only DELETE /api/v1/uploads/{id} deletes (it removes the objects too): no
                    # queue message can.
                    log.warning("deleted status from a queue refused", extra={"event_id": str(event.id)})
                    return None
                if row["status"] != event.status.value:
                    log.info(
                        "stale event ignored",
                        extra={
                            "event_id": str(event.id),
                            "status": event.status.value,
                            "current": row["status"],
                        },
                    )
                    return None
            current = moved or row
            assert current is not None
            kinds: list[str] = []
            if current["status"] == UploadStatus.READY.value:  # listed only once ready (and final then)
                kinds = [
                    r["kind"]
                    for r in await conn.fetch(
                        "SELECT kind FROM derivatives WHERE upload_id = $1 ORDER BY kind", event.upload_id
                    )
                ]
            if moved is not None or event.type in ANNOUNCES_CHANGE:
                return await self.changes.changed(current, event=event, derivatives=kinds)
            return await self.changes.relayed(current, event, derivatives=kinds)
