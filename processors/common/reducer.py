"""The status reducer: an upload's status is a function of its processing steps.

Pure: it only says where the steps point. The store applies the answer through
:func:`core.transition.transition`, which refuses what :func:`core.status.can_transition`
does not allow, so status never moves backwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.status import ReasonCode, UploadStatus
from processors.common.sniff import DOCUMENT_TYPES, IMAGE_TYPES

SCAN, METADATA, IMAGE, DOCUMENT = "scan", "metadata", "image", "document"
ALL_PROCESSORS = (SCAN, METADATA, IMAGE, DOCUMENT)


@dataclass(frozen=True, slots=True)
class StepState:
    processor: str
    state: str  # running | done | skipped | failed
    reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class Derived:
    status: UploadStatus
    reason: str | None = None


def applicable_processors(declared_type: str) -> frozenset[str]:
    """Processors whose result an upload of ``declared_type`` waits for before ``ready``."""
    kind = declared_type.lower()
    needed = {SCAN, METADATA}
    if kind in IMAGE_TYPES:
        needed.add(IMAGE)
    if kind in DOCUMENT_TYPES:
        needed.add(DOCUMENT)
    return frozenset(needed)


def derive_status(declared_type: str, steps: Iterable[StepState]) -> Derived | None:
    """Where the steps put the upload, or None when they say nothing yet.

    infected scan → quarantined; any failed step → failed (its reason); every applicable
    step done (the scan among them, so clean) → ready; scan done → processing; scan
    running → scanning; metadata done → uploaded.
    """
    by_name = {s.processor: s for s in steps}
    failed = [s for s in by_name.values() if s.state == "failed"]
    if any(s.reason_code == ReasonCode.INFECTED for s in failed):
        return Derived(UploadStatus.QUARANTINED, ReasonCode.INFECTED)
    if failed:
        first = next((s for s in failed if s.processor == SCAN), failed[0])
        return Derived(UploadStatus.FAILED, first.reason_code or ReasonCode.PROCESSING_FAILED)
    needed = applicable_processors(declared_type)
    done = {name for name, s in by_name.items() if s.state == "done"}
    if needed <= done:
        return Derived(UploadStatus.READY)
    scan = by_name.get(SCAN)
    if scan is not None and scan.state == "done":
        return Derived(UploadStatus.PROCESSING)
    if scan is not None and scan.state == "running":
        return Derived(UploadStatus.SCANNING)
    if METADATA in done:
        return Derived(UploadStatus.UPLOADED)
    return None
