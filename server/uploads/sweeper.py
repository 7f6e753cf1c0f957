"""Stale uploads: multipart uploads idle longer than ``stale_upload_hours`` are aborted in
S3 and marked ``failed``/``expired``; idle single-PUT reservations expire the same way.

A component owned by the app: ``start`` spawns one task, ``stop`` cancels it and waits.
A sweep that fails is logged and retried next interval; a crash of the loop itself is
kept and re-raised by ``stop`` (and visible through ``failure``), never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from core.db import all_tenant_ids, tenant_transaction
from core.errors import Transient, as_transient
from core.publish import EventPublisher
from core.settings import Settings
from core.status import ReasonCode, UploadStatus
from core.transition import LIVE, transition
from server.status_cache import StatusCache
from server.uploads import s3ops, store
from server.uploads.changes import UploadChanges

log = logging.getLogger(__name__)
BATCH = 200


async def sweep_once(
    pool: asyncpg.Pool,
    s3: Any,
    settings: Settings,
    cache: StatusCache,
    publisher: EventPublisher,
    *,
    now: datetime | None = None,
) -> int:
    """Expire every stale upload of every tenant; returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=settings.stale_upload_hours)
    after = UploadChanges(cache, publisher)
    expired = 0
    for tenant_id in await all_tenant_ids(pool):
        while True:
            changed = []
            async with tenant_transaction(pool, tenant_id) as conn:
                rows = await store.stale_uploads(conn, cutoff, BATCH)
                for row in rows:
                    if row["multipart_upload_id"]:
                        await s3ops.abort(s3, settings.bucket, row["s3_key"], row["multipart_upload_id"])
                    moved = await transition(
                        conn, row["upload_id"], UploadStatus.FAILED, reason=ReasonCode.EXPIRED, only_from=LIVE
                    )
                    if moved is not None:
                        changed.append(moved)
            for row in changed:
                await after.changed(row)
            expired += len(changed)
            if len(rows) < BATCH:
                break
    if expired:
        log.info("expired stale uploads", extra={"count": expired})
    return expired


class StaleUploadSweeper:
    name = "stale-upload-sweeper"

    def __init__(self, app_state: Any, *, interval_seconds: float | None = None) -> None:
        self.state = app_state
        settings: Settings = app_state.settings
        # Sweep a few times per staleness period, at most every 10 minutes.
        self.interval = interval_seconds or min(600.0, max(1.0, settings.stale_upload_hours * 3600 / 4))
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.sweeps = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("sweeper already started")
        self._task = asyncio.create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            log.error("stale-upload sweeper crashed", exc_info=self.failure)

    async def sweep(self) -> int:
        s = self.state
        return await sweep_once(s.pool, s.s3, s.settings, s.status_cache, s.publisher)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                error = as_transient(exc)
                if not isinstance(error, Transient):
                    raise
                log.warning("stale-upload sweep failed; retrying next interval", extra={"error": str(error)})
            self.sweeps += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=10)  # never raises the task's own error
        if self.failure is not None:
            raise RuntimeError("stale-upload sweeper had crashed") from self.failure
