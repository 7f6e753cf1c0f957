"""The upload status machine (DESIGN §3).

pending → uploading → uploaded → scanning → processing → ready, or a terminal
``failed`` (with a reason code) or ``quarantined``. Status never moves backwards:
consumers see events at least once and out of order, so every writer goes
through :func:`can_transition`.
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


_RANK: dict[UploadStatus, int] = {
    UploadStatus.PENDING: 0,
    UploadStatus.UPLOADING: 1,
    UploadStatus.UPLOADED: 2,
    UploadStatus.SCANNING: 3,
    UploadStatus.PROCESSING: 4,
    UploadStatus.READY: 5,
    UploadStatus.FAILED: 6,
    UploadStatus.QUARANTINED: 7,
}

TERMINAL: frozenset[UploadStatus] = frozenset(
    {UploadStatus.READY, UploadStatus.FAILED, UploadStatus.QUARANTINED}
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


def rank(status: UploadStatus | str) -> int:
    return _RANK[UploadStatus(status)]


def can_transition(current: UploadStatus | str, new: UploadStatus | str) -> bool:
    """True when moving ``current`` → ``new`` is forward progress.

    ``ready`` and ``quarantined`` are final. ``failed`` and ``quarantined`` may be reached
    from any non-terminal state, and ``quarantined`` may replace ``failed``: an infected
    verdict is stronger than a processing error that raced it.
    """
    cur, nxt = UploadStatus(current), UploadStatus(new)
    if cur == nxt:
        return False
    if cur in (UploadStatus.READY, UploadStatus.QUARANTINED):
        return False
    if cur == UploadStatus.FAILED:
        return nxt == UploadStatus.QUARANTINED
    if nxt in (UploadStatus.FAILED, UploadStatus.QUARANTINED):
        return True
    return _RANK[nxt] > _RANK[cur]
