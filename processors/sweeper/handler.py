"""Lambda on a schedule (every few minutes): uploads stuck in scanning/processing past
``processing_timeout_seconds`` fail with ``processing_timeout``; outbox events whose
publishing was interrupted are published."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core.db import all_tenant_ids
from processors.common import originals, store
from processors.common.pipeline import publish
from processors.common.runtime import Runtime, runtime_for

log = logging.getLogger(__name__)
OUTBOX_GRACE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class SweepReport:
    timed_out: int
    republished: int


def sweep(runtime: Runtime, *, outbox_grace_seconds: float = OUTBOX_GRACE_SECONDS) -> SweepReport:
    timeout = runtime.settings.processing_timeout_seconds
    timed_out = republished = 0
    for tenant_id in runtime.run(all_tenant_ids(runtime.pool)):
        stale = runtime.run(store.unpublished(runtime.pool, tenant_id, outbox_grace_seconds))
        if stale:
            publish(runtime, stale)
            republished += len(stale)
        events = runtime.run(store.sweep_stuck(runtime.pool, tenant_id, timeout))
        for event in events:  # timed out: nothing of the upload is kept, the original included
            failed = runtime.run(store.failed_original(runtime.pool, tenant_id, event.upload_id))
            if failed is not None:
                originals.delete_original(runtime.s3, runtime.settings.bucket, failed)
        if events:
            publish(runtime, events)
            timed_out += len(events)
    if timed_out or republished:
        log.warning("sweeper acted", extra={"timed_out": timed_out, "republished": republished})
    return SweepReport(timed_out, republished)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = sweep(runtime_for(context))
    return {"timed_out": report.timed_out, "republished": report.republished}
