"""The pipeline's database work: claiming a step (idempotency), recording its outcome,
deriving the upload's status, and the outbox of events to publish.

Every function works inside one tenant transaction and locks the upload row first, so
processors finishing at the same moment serialise on it and the reducer sees every step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import asyncpg

from core.db import tenant_transaction
from core.errors import Transient
from core.events import Event, EventType
from core.status import ReasonCode, UploadStatus, rank
from core.transition import transition
from core.upload_view import UPLOAD_COLUMNS
from processors.common.outcome import StepOutcome
from processors.common.reducer import METADATA, SCAN, StepState, applicable_processors, derive_status
from processors.common.s3event import ObjectRef


class StepInProgress(Transient):
    """Another delivery of the same object version is being processed: retry later."""


@dataclass(frozen=True, slots=True)
class UploadRow:
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    upload_id: uuid.UUID
    uploader_id: uuid.UUID
    declared_type: str
    status: UploadStatus
    file_name: str
    s3_key: str
    size_bytes: int = 0  # declared (0: not declared) until the metadata step records S3's
    declared_sha256: str | None = None
    scanned_version_id: str | None = None  # the pinned object version (see claim)
    scanned_etag: str | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> UploadRow:
        return cls(
            tenant_id=r["tenant_id"],
            project_id=r["project_id"],
            upload_id=r["upload_id"],
            uploader_id=r["uploader_id"],
            declared_type=r["declared_type"],
            status=UploadStatus(r["status"]),
            file_name=r["file_name"],
            s3_key=r["s3_key"],
            size_bytes=r["size_bytes"],
            declared_sha256=r["declared_sha256"],
            scanned_version_id=r["scanned_version_id"],
            scanned_etag=r["scanned_etag"],
        )

    @property
    def pinned(self) -> bool:
        return self.scanned_version_id is not None or self.scanned_etag is not None

    def pins(self, ref: ObjectRef) -> bool:
        """True when ``ref`` is the object version this upload is pinned to."""
        if self.scanned_version_id is not None and ref.version_id and ref.version_id != "null":
            return self.scanned_version_id == ref.version_id
        return self.scanned_etag is not None and self.scanned_etag == ref.etag


ClaimKind = Literal["run", "duplicate", "skip", "missing", "overwrite"]


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    upload: UploadRow | None = None
    why: str = ""
    pending: list[Event] = field(default_factory=list)
    # "overwrite": True when this delivery wrote the audit row (the first of the processors)
    recorded: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    events: list[Event]
    delete_keys: list[str]
    # the failed upload whose original is to be deleted (once the scan has had its say)
    delete_original: UploadRow | None = None


# The one column list of the uploads table (migrations 0007 and 0008 have landed).
_UPLOAD_COLUMNS = UPLOAD_COLUMNS


async def _lock_upload(conn: asyncpg.Connection, upload_id: uuid.UUID) -> UploadRow | None:
    row = await conn.fetchrow(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1 FOR UPDATE", upload_id
    )
    return UploadRow.from_record(row) if row is not None else None


async def _pending_events(conn: asyncpg.Connection, upload_id: uuid.UUID) -> list[Event]:
    from core.events import parse_event

    rows = await conn.fetch(
        "SELECT payload FROM pipeline_outbox WHERE upload_id = $1 AND published_at IS NULL "
        "ORDER BY created_at",
        upload_id,
    )
    return [parse_event(r["payload"]) for r in rows]


async def claim(
    pool: asyncpg.Pool,
    ref: ObjectRef,
    processor: str,
    *,
    in_progress_seconds: float,
    delivery: str | None = None,
) -> Claim:
    """Decide whether this delivery does the work, and mark the step running if so.

    ``duplicate``: this processor already finished this object version (the caller only
    flushes events still in the outbox). ``skip``: nothing to do for this upload (not
    applicable, or already final) — recorded, so redeliveries are duplicates. A step
    ``running`` for less than ``in_progress_seconds`` raises :class:`StepInProgress` —
    unless it was claimed by this very message (``delivery``, the SQS message id): SQS
    hands a message out again only once its visibility timeout ran out undeleted, so the
    receive that claimed the step is gone (its process was killed) and this one takes over.
    """
    version = ref.object_version
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        upload = await _lock_upload(conn, ref.upload_id)
        if upload is None or upload.s3_key != ref.key or upload.project_id != ref.project_id:
            return Claim("missing", why="no upload row for this key in its tenant")
        if (upload.pinned and not upload.pins(ref)) or (not upload.pinned and _past_uploaded(upload)):
            recorded = await _record_overwrite(conn, upload, ref, processor)
            return Claim(
                "overwrite",
                upload,
                why=f"upload is {upload.status}, pinned to another version",
                recorded=recorded,
            )
        if not upload.pinned:
            upload = await _pin(conn, upload, ref)
        step = await conn.fetchrow(
            "SELECT state, object_version, started_at > now() - make_interval(secs => $3) AS fresh, "
            "result->>'delivery' AS delivery "
            "FROM processing_steps WHERE upload_id = $1 AND processor = $2",
            ref.upload_id,
            processor,
            in_progress_seconds,
        )
        if step is not None and step["object_version"] == version:
            if step["state"] != "running":
                return Claim("duplicate", upload, pending=await _pending_events(conn, ref.upload_id))
            if step["fresh"] and (delivery is None or step["delivery"] != delivery):
                raise StepInProgress(f"{processor} of {ref.upload_id} is already running")
        skip_why = ""
        if processor not in applicable_processors(upload.declared_type):
            skip_why = f"not applicable to {upload.declared_type}"
        elif upload.status in (UploadStatus.READY, UploadStatus.QUARANTINED, UploadStatus.DELETED) or (
            upload.status == UploadStatus.FAILED and processor != SCAN
        ):
            skip_why = f"upload is already {upload.status}"
        state = "skipped" if skip_why else "running"
        await conn.execute(
            """INSERT INTO processing_steps
                 (tenant_id, upload_id, processor, object_version, state, result, attempts, started_at,
                  finished_at)
               VALUES ($1, $2, $3, $4, $5, $6, 1, now(), CASE WHEN $5 = 'running' THEN NULL ELSE now() END)
               ON CONFLICT (upload_id, processor) DO UPDATE SET
                 object_version = EXCLUDED.object_version, state = EXCLUDED.state,
                 result = EXCLUDED.result, reason_code = NULL, started_at = now(),
                 finished_at = EXCLUDED.finished_at,
                 attempts = CASE WHEN processing_steps.object_version = EXCLUDED.object_version
                                 THEN processing_steps.attempts + 1 ELSE 1 END""",
            ref.tenant_id,
            ref.upload_id,
            processor,
            version,
            state,
            {"skipped": skip_why} if skip_why else ({"delivery": delivery} if delivery else {}),
        )
        if skip_why:
            return Claim("skip", upload, why=skip_why)
        await _reduce(conn, upload, finished=None)  # e.g. scan running → scanning
        return Claim("run", upload)


def _past_uploaded(upload: UploadRow) -> bool:
    return rank(upload.status) > rank(UploadStatus.UPLOADED)


async def _pin(conn: asyncpg.Connection, upload: UploadRow, ref: ObjectRef) -> UploadRow:
    """Pin the (locked, unpinned) upload to ``ref``: the one object version every step reads."""
    version_id = ref.version_id if ref.version_id and ref.version_id != "null" else None
    await conn.execute(
        "UPDATE uploads SET scanned_version_id = $2, scanned_etag = $3 WHERE upload_id = $1",
        upload.upload_id,
        version_id,
        ref.etag,
    )
    return replace(upload, scanned_version_id=version_id, scanned_etag=ref.etag)


async def _record_overwrite(
    conn: asyncpg.Connection, upload: UploadRow, ref: ObjectRef, processor: str
) -> bool:
    """The audit row of a refused object version; False when another processor wrote it."""
    inserted = await conn.fetchval(
        """INSERT INTO overwrite_rejections (tenant_id, upload_id, object_version, version_id, etag,
             size_bytes, upload_status, pinned_version_id, processor)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (upload_id, object_version) DO NOTHING RETURNING 1""",
        upload.tenant_id,
        upload.upload_id,
        ref.object_version,
        ref.version_id,
        ref.etag,
        ref.size,
        upload.status,
        upload.scanned_version_id,
        processor,
    )
    return bool(inserted)


async def finish(pool: asyncpg.Pool, ref: ObjectRef, processor: str, outcome: StepOutcome) -> Finished:
    """Record the outcome of a claimed step; returns the events to publish (already in the
    outbox) and S3 keys to delete. A step finished meanwhile by another delivery is left
    as it is and nothing is emitted."""
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        upload = await _lock_upload(conn, ref.upload_id)
        new_keys = [d.s3_key for d in outcome.derivatives]
        if upload is None:
            return Finished([], new_keys)
        # Deleted meanwhile (any step), or infected meanwhile (any step but the scan): the
        # step is recorded as skipped and its derivatives must not exist.
        gone = upload.status == UploadStatus.DELETED or (
            upload.status == UploadStatus.QUARANTINED and processor != SCAN
        )
        updated = await conn.fetchval(
            """UPDATE processing_steps SET state = $4, reason_code = $5, result = $6, finished_at = now()
               WHERE upload_id = $1 AND processor = $2 AND object_version = $3 AND state = 'running'
               RETURNING 1""",
            ref.upload_id,
            processor,
            ref.object_version,
            "skipped" if gone else outcome.state,
            outcome.reason,
            outcome.result,
        )
        if not updated:
            return Finished([], [])
        if gone:
            return Finished([], new_keys)
        delete_keys: list[str] = []
        if outcome.quarantine:
            rows = await conn.fetch(
                "DELETE FROM derivatives WHERE upload_id = $1 RETURNING s3_key", ref.upload_id
            )
            delete_keys = [r["s3_key"] for r in rows]
        for d in outcome.derivatives:
            await conn.execute(
                """INSERT INTO derivatives
                     (tenant_id, upload_id, kind, s3_key, mime_type, width, height, size_bytes)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (upload_id, kind) DO UPDATE SET s3_key = EXCLUDED.s3_key,
                     mime_type = EXCLUDED.mime_type, width = EXCLUDED.width, height = EXCLUDED.height,
                     size_bytes = EXCLUDED.size_bytes, created_at = now()""",
                ref.tenant_id,
                ref.upload_id,
                d.kind,
                d.s3_key,
                d.mime_type,
                d.width,
                d.height,
                d.size_bytes,
            )
        if outcome.metadata or outcome.sniffed_type or outcome.sha256 or outcome.stored_size is not None:
            await conn.execute(
                """UPDATE uploads SET metadata = metadata || $2::jsonb,
                     sniffed_type = COALESCE($3, sniffed_type), sha256 = COALESCE($4, sha256),
                     size_bytes = COALESCE($5, size_bytes),
                     sha256_verified = COALESCE($6, sha256_verified),
                     version = version + 1, updated_at = now()
                   WHERE upload_id = $1""",
                ref.upload_id,
                outcome.metadata,
                outcome.sniffed_type,
                outcome.sha256,
                outcome.stored_size,
                outcome.sha256_verified,
            )
        events = await _reduce(conn, upload, finished=(processor, outcome))
        if await _failed_and_scanned(conn, ref.upload_id):
            rows = await conn.fetch(
                "DELETE FROM derivatives WHERE upload_id = $1 RETURNING s3_key", ref.upload_id
            )
            delete_keys = sorted({*delete_keys, *new_keys, *(r["s3_key"] for r in rows)})
            return Finished(events, delete_keys, delete_original=upload)
        return Finished(events, delete_keys)


async def _failed_and_scanned(conn: asyncpg.Connection, upload_id: uuid.UUID) -> bool:
    """The upload is ``failed`` and its scan has had its say (an infected verdict would have
    made it ``quarantined``): nothing of it is kept, the original included."""
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM uploads u WHERE u.upload_id = $1 AND u.status = 'failed'
                 AND EXISTS (SELECT 1 FROM processing_steps s WHERE s.upload_id = u.upload_id
                               AND s.processor = 'scan' AND s.state IN ('done', 'failed', 'skipped'))""",
            upload_id,
        )
    )


async def release(pool: asyncpg.Pool, ref: ObjectRef, processor: str, error: str) -> None:
    """The claimed work raised: let the next delivery run it at once (not wait for the
    in-progress window), keeping the error for whoever looks at the step."""
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        await conn.execute(
            """UPDATE processing_steps SET started_at = 'epoch', result = $4
               WHERE upload_id = $1 AND processor = $2 AND object_version = $3 AND state = 'running'""",
            ref.upload_id,
            processor,
            ref.object_version,
            {"last_error": error[:2000]},
        )


async def fail_step(
    pool: asyncpg.Pool, ref: ObjectRef, processor: str, reason: ReasonCode, detail: dict[str, Any]
) -> list[Event]:
    """Mark a step failed from outside the processor (its message was dead-lettered)."""
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        upload = await _lock_upload(conn, ref.upload_id)
        if upload is None or upload.s3_key != ref.key:
            return []
        done = await conn.fetchval(
            "SELECT 1 FROM processing_steps WHERE upload_id = $1 AND processor = $2 "
            "AND object_version = $3 AND state IN ('done', 'skipped', 'failed')",
            ref.upload_id,
            processor,
            ref.object_version,
        )
        if done:
            return []
        await conn.execute(
            """INSERT INTO processing_steps (tenant_id, upload_id, processor, object_version, state,
                 reason_code, result, finished_at)
               VALUES ($1, $2, $3, $4, 'failed', $5, $6, now())
               ON CONFLICT (upload_id, processor) DO UPDATE SET object_version = EXCLUDED.object_version,
                 state = 'failed', reason_code = EXCLUDED.reason_code, result = EXCLUDED.result,
                 finished_at = now()""",
            ref.tenant_id,
            ref.upload_id,
            processor,
            ref.object_version,
            reason,
            detail,
        )
        return await _reduce(conn, upload, finished=None)


async def sweep_stuck(pool: asyncpg.Pool, tenant_id: uuid.UUID, timeout_seconds: float) -> list[Event]:
    """Fail uploads of ``tenant_id`` in scanning/processing for longer than the timeout."""
    events: list[Event] = []
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await conn.fetch(
            f"""SELECT {_UPLOAD_COLUMNS} FROM uploads
                WHERE status IN ('scanning', 'processing')
                  AND updated_at < now() - make_interval(secs => $1)
                ORDER BY updated_at LIMIT 500 FOR UPDATE SKIP LOCKED""",
            float(timeout_seconds),
        )
        for r in rows:
            upload = UploadRow.from_record(r)
            await conn.execute(
                """UPDATE processing_steps SET state = 'failed', reason_code = $2, finished_at = now(),
                     result = result || '{"error": "timed out"}'::jsonb
                   WHERE upload_id = $1 AND state = 'running'""",
                upload.upload_id,
                ReasonCode.PROCESSING_TIMEOUT,
            )
            event = await _set_status(conn, upload, UploadStatus.FAILED, ReasonCode.PROCESSING_TIMEOUT)
            if event is not None:
                events.append(event)
    return events


async def current_status(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, upload_id: uuid.UUID
) -> UploadStatus | None:
    """The upload's status now (None when the row is gone)."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        status = await conn.fetchval("SELECT status FROM uploads WHERE upload_id = $1", upload_id)
    return UploadStatus(status) if status is not None else None


async def failed_original(pool: asyncpg.Pool, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> UploadRow | None:
    """The upload, when it is ``failed`` with its scan final: its original is to be deleted
    (the dead-letter handler and the sweeper ask after failing an upload)."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        if not await _failed_and_scanned(conn, upload_id):
            return None
        row = await conn.fetchrow(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1", upload_id)
    return UploadRow.from_record(row) if row is not None else None


async def unpublished(pool: asyncpg.Pool, tenant_id: uuid.UUID, older_than_seconds: float) -> list[Event]:
    """Outbox events of ``tenant_id`` whose publishing was interrupted."""
    from core.events import parse_event

    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        rows = await conn.fetch(
            "SELECT payload FROM pipeline_outbox WHERE published_at IS NULL "
            "AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT 500",
            float(older_than_seconds),
        )
    return [parse_event(r["payload"]) for r in rows]


async def mark_published(pool: asyncpg.Pool, tenant_id: uuid.UUID, event_ids: list[uuid.UUID]) -> None:
    if not event_ids:
        return
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "UPDATE pipeline_outbox SET published_at = now() WHERE event_id = ANY($1::uuid[])", event_ids
        )


# -- the reducer applied ---------------------------------------------------------------


async def _reduce(
    conn: asyncpg.Connection, upload: UploadRow, *, finished: tuple[str, StepOutcome] | None
) -> list[Event]:
    rows = await conn.fetch(
        "SELECT processor, state, reason_code FROM processing_steps WHERE upload_id = $1", upload.upload_id
    )
    derived = derive_status(upload.declared_type, [StepState(r[0], r[1], r[2]) for r in rows])
    events: list[Event] = []
    status = upload.status
    if derived is not None:
        event = await _set_status(conn, upload, derived.status, derived.reason)
        if event is not None:
            events.append(event)
            status = derived.status
    if (
        finished is not None
        and finished[0] == METADATA
        and finished[1].state == "done"
        and status not in (UploadStatus.FAILED, UploadStatus.QUARANTINED)
    ):
        completed = _event(EventType.UPLOAD_COMPLETED, upload, status, finished[1].result)
        await _outbox(conn, completed)
        events.insert(0, completed)
    return events


async def _set_status(
    conn: asyncpg.Connection, upload: UploadRow, status: UploadStatus, reason: str | None
) -> Event | None:
    """Move the (locked) upload forward (the one transition, :mod:`core.transition`);
    returns the event the move publishes, if any: one per move to ``ready``, ``failed`` or
    ``quarantined`` (the events consumer counts the change when it applies that event)."""
    moved = await transition(conn, upload.upload_id, status, reason=reason)
    if moved is None:
        return None
    if status == UploadStatus.READY:
        event = _event(EventType.PROCESSING_COMPLETED, upload, status, {})
    elif status in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        event = _event(EventType.UPLOAD_FAILED, upload, status, {"reason": reason})
    else:
        return None
    await _outbox(conn, event)
    return event


def _event(kind: EventType, upload: UploadRow, status: UploadStatus, data: dict[str, Any]) -> Event:
    return Event.new(
        kind,
        tenant_id=upload.tenant_id,
        project_id=upload.project_id,
        upload_id=upload.upload_id,
        user_id=upload.uploader_id,
        status=status,
        data={"file_name": upload.file_name, "declared_type": upload.declared_type, **data},
    )


async def _outbox(conn: asyncpg.Connection, event: Event) -> None:
    await conn.execute(
        "INSERT INTO pipeline_outbox (tenant_id, event_id, upload_id, event_type, payload) "
        "VALUES ($1, $2, $3, $4, $5)",
        event.tenant_id,
        event.id,
        event.upload_id,
        event.type.value,
        event.to_dict(),
    )
