"""The one place an upload's status changes (DESIGN §3, issue 12).

:func:`transition` moves an upload to a later status in ONE guarded ``UPDATE``: the row's
current status must be one from which the machine (:func:`core.status.can_transition`)
allows the move and of a lower rank than the new one, both checked by PostgreSQL on the
row it updates, and ``version`` is incremented. PostgreSQL re-evaluates the ``WHERE`` of
an ``UPDATE`` that waited on a concurrent writer against the row that writer committed,
so two writers can never move an upload backwards, and of two writers racing for the same
move exactly one wins; the other gets ``None``. Same-status moves are no-ops (``None``).

:func:`record_progress` is the other write of a live upload: counters only, never a status.
:func:`guarded_update` / :func:`transition_args` are the same ``UPDATE`` for a caller that
sends it inside one statement with its own work (the events consumer: dedupe + move).

Both take a connection inside the caller's tenant transaction (:func:`core.db.tenant_transaction`),
so row-level security scopes them to that tenant. What follows a change on the server (status
cache, metric, event) is ``server.uploads.changes``; the processors announce theirs through the
outbox and SNS, and the events consumer runs the same step for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.status import ReasonCode, UploadStatus, rank, sources
from core.upload_view import UPLOAD_COLUMNS

NEEDS_REASON = frozenset({UploadStatus.FAILED, UploadStatus.QUARANTINED})


@dataclass(frozen=True, slots=True)
class Progress:
    """Counters that travel with a change (or a progress report). ``None`` leaves a counter
    as it is; counters never go backwards. ``size`` is the object's size as stored."""

    parts_done: int | None = None
    bytes_done: int | None = None
    size: int | None = None


_GUARDED_UPDATE = """UPDATE uploads SET
      status = $2,
      reason_code = $3,
      parts_done = GREATEST(parts_done, COALESCE($4, parts_done)),
      bytes_done = GREATEST(bytes_done, COALESCE($5, bytes_done)),
      size_bytes = COALESCE($6, size_bytes),
      metadata = metadata || COALESCE($7::jsonb, '{{}}'::jsonb),
      version = version + 1,
      updated_at = now(),
      last_activity_at = now()
    WHERE upload_id = $1 AND status = ANY($8::text[])
      AND array_position($9::text[], status) < array_position($9::text[], $2){condition}
    RETURNING {columns}"""


def guarded_update(condition: str = "") -> str:
    """The guarded ``UPDATE`` of :func:`transition` (parameters ``$1``–``$9``:
    :func:`transition_args`), with ``condition`` (``AND ...``, parameters from ``$10``) added
    to its guard: for a caller that sends it with its own work in one statement (a
    data-modifying ``WITH``). Returns :data:`UPLOAD_COLUMNS` of the moved row."""
    extra = f"\n      {condition}" if condition else ""
    return _GUARDED_UPDATE.format(condition=extra, columns=UPLOAD_COLUMNS)


_TRANSITION = guarded_update()

_PROGRESS = f"""UPDATE uploads SET
      parts_done = GREATEST(parts_done, COALESCE($2, parts_done)),
      bytes_done = GREATEST(bytes_done, COALESCE($3, bytes_done)),
      version = version + 1,
      updated_at = now(),
      last_activity_at = now()
    WHERE upload_id = $1 AND status = ANY($4::text[])
      AND (COALESCE($2, parts_done) > parts_done OR COALESCE($3, bytes_done) > bytes_done)
    RETURNING {UPLOAD_COLUMNS}"""

LIVE = (UploadStatus.PENDING, UploadStatus.UPLOADING)
# Every status in rank order: the UPDATE compares ranks itself (never backwards), on top of
# the machine's list of statuses the move may start from.
_BY_RANK = [s.value for s in sorted(UploadStatus, key=rank)]
# The machine's sources of every target, computed once (the guard's ``$8``).
_SOURCES = {target: tuple(s.value for s in sources(target)) for target in UploadStatus}


def _reason(to: UploadStatus, reason: ReasonCode | str | None) -> str | None:
    if to in NEEDS_REASON:
        if reason is None:
            if to is UploadStatus.QUARANTINED:
                return ReasonCode.INFECTED.value
            raise ValueError(f"a move to {to.value} needs a reason code")
        return ReasonCode(reason).value
    return None


async def transition(
    conn: asyncpg.Connection,
    upload_id: uuid.UUID,
    to: UploadStatus | str,
    *,
    reason: ReasonCode | str | None = None,
    progress: Progress | None = None,
    metadata: Mapping[str, Any] | None = None,
    only_from: Collection[UploadStatus | str] | None = None,
) -> asyncpg.Record | None:
    """Move ``upload_id`` to ``to``; the new row (:data:`UPLOAD_COLUMNS`), or ``None`` when
    the machine does not allow the move from the row's current status (or the upload is not
    in this tenant, or its status is not in ``only_from`` when that is given).

    ``reason`` is kept for ``failed`` / ``quarantined`` (required for ``failed``) and cleared
    otherwise; ``progress`` and ``metadata`` (merged into the row's metadata) travel with
    the change and are written only when it happens.
    """
    args = transition_args(
        upload_id, to, reason=reason, progress=progress, metadata=metadata, only_from=only_from
    )
    if args is None:
        return None
    row: asyncpg.Record | None = await conn.fetchrow(_TRANSITION, *args)
    return row


def transition_args(
    upload_id: uuid.UUID,
    to: UploadStatus | str,
    *,
    reason: ReasonCode | str | None = None,
    progress: Progress | None = None,
    metadata: Mapping[str, Any] | None = None,
    only_from: Collection[UploadStatus | str] | None = None,
) -> list[Any] | None:
    """The parameters of :func:`guarded_update` for the move :func:`transition` makes with
    the same arguments; ``None`` when no status may move to ``to`` (nothing to send)."""
    target = UploadStatus(to)
    allowed = list(_SOURCES[target])
    if only_from is not None:
        wanted = {UploadStatus(s) for s in only_from}
        allowed = [s for s in allowed if UploadStatus(s) in wanted]
    if not allowed:
        return None
    counters = progress or Progress()
    return [
        upload_id,
        target.value,
        _reason(target, reason),
        counters.parts_done,
        counters.bytes_done,
        counters.size,
        dict(metadata) if metadata else None,
        allowed,
        _BY_RANK,
    ]


async def record_progress(
    conn: asyncpg.Connection,
    upload_id: uuid.UUID,
    progress: Progress,
    *,
    only_from: Collection[UploadStatus | str] = LIVE,
) -> asyncpg.Record | None:
    """Raise the counters of a live upload (``pending`` / ``uploading``) without touching
    its status; the new row, or ``None`` when nothing moved forward (or the upload is not
    live). ``version`` is incremented: the document changed."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _PROGRESS,
        upload_id,
        progress.parts_done,
        progress.bytes_done,
        [UploadStatus(s).value for s in only_from],
    )
    return row
