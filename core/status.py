"""The upload status machine (DESIGN §3).

pending → uploading → uploaded → scanning → processing → ready, or a terminal
``failed`` (with a reason code), ``quarantined`` (infected) or ``deleted`` (removed by
its uploader or an admin; reachable from every status, ``ready`` included). Status never
moves backwards: consumers see events at least once and out of order, so every writer goes
through :func:`core.transition.transition`, whose guard is :func:`can_transition`.
"""

from __future__ import annotations

from enum import StrEnum


class UploadStatus(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    SCANNING = "scanning"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    DELETED = "deleted"


_RANK: dict[UploadStatus, int] = {
    UploadStatus.PENDING: 0,
    UploadStatus.UPLOADING: 1,
    UploadStatus.UPLOADED: 2,
    UploadStatus.SCANNING: 3,
    UploadStatus.PROCESSING: 4,
    UploadStatus.READY: 5,
    UploadStatus.FAILED: 6,
    UploadStatus.QUARANTINED: 7,
    UploadStatus.DELETED: 8,
}

TERMINAL: frozenset[UploadStatus] = frozenset(
    {UploadStatus.READY, UploadStatus.FAILED, UploadStatus.QUARANTINED, UploadStatus.DELETED}
)
IN_FLIGHT: frozenset[UploadStatus] = frozenset(
    {UploadStatus.UPLOADED, UploadStatus.SCANNING, UploadStatus.PROCESSING}
)


class ReasonCode(StrEnum):
    """Why an upload is ``failed`` or ``quarantined``."""

    ABORTED = "aborted"
    EXPIRED = "expired"
    INFECTED = "infected"
    TYPE_MISMATCH = "type_mismatch"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    TOO_LARGE = "too_large"
    CORRUPT = "corrupt"
    DECOMPRESSION_BOMB = "decompression_bomb"
    ENCRYPTED = "encrypted"
    PROCESSING_FAILED = "processing_failed"
    PROCESSING_TIMEOUT = "processing_timeout"
    SIZE_MISMATCH = "size_mismatch"  # S3 stored another size than the one declared
    CHECKSUM_MISMATCH = "checksum_mismatch"  # sha256 of the stored bytes ≠ the declared one
    SCAN_LIMIT_EXCEEDED = "scan_limit_exceeded"  # clamd skipped content (its Max* limits)
    TOO_COMPLEX = "too_complex"  # a parser limit: pages, time per page or per file


def rank(status: UploadStatus | str) -> int:
    return _RANK[UploadStatus(status)]


def can_transition(current: UploadStatus | str, new: UploadStatus | str) -> bool:
    """True when moving ``current`` → ``new`` is forward progress.

    ``deleted`` may be reached from every other status and is final. Otherwise ``ready``
    and ``quarantined`` are final. ``failed`` and ``quarantined`` may be reached from any
    non-terminal state, and ``quarantined`` may replace ``failed``: an infected verdict is
    stronger than a processing error that raced it. Every allowed move raises the rank.
    """
    cur, nxt = UploadStatus(current), UploadStatus(new)
    if cur == nxt or cur == UploadStatus.DELETED:
        return False
    if nxt == UploadStatus.DELETED:
        return True
    if cur in (UploadStatus.READY, UploadStatus.QUARANTINED):
        return False
    if cur == UploadStatus.FAILED:
        return nxt == UploadStatus.QUARANTINED
    if nxt in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        return True
    return _RANK[nxt] > _RANK[cur]


def sources(new: UploadStatus | str) -> tuple[UploadStatus, ...]:
    """Every status from which ``new`` may be reached (the guard of the one transition)."""
    return tuple(s for s in UploadStatus if can_transition(s, new))
