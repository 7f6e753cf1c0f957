"""Who receives a push for an event — pure rules, no I/O.

* The uploader: on failure or quarantine (critical: ignores quiet hours and cannot be
  muted) and on ``processing.completed`` when they want it and are not in quiet hours.
* Tenant admins: on quarantine (not critical for them: their preferences apply).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.events import Event, EventType
from core.status import UploadStatus
from subscribers.preferences import Preferences


class PushKind(StrEnum):
    FAILED = "upload.failed"
    QUARANTINED = "upload.quarantined"
    COMPLETED = "processing.completed"


class Audience(StrEnum):
    UPLOADER = "uploader"
    ADMIN = "admin"


CRITICAL_FOR_UPLOADER = frozenset({PushKind.FAILED, PushKind.QUARANTINED})


def push_kind(event: Event) -> PushKind | None:
    """The push an event stands for, or None (progress, upload.completed, upload.deleted —
    a removal is an action someone took, not news for a phone — ...)."""
    if event.type not in (EventType.UPLOAD_FAILED, EventType.PROCESSING_COMPLETED):
        return None
    if event.status is UploadStatus.QUARANTINED:
        return PushKind.QUARANTINED
    if event.status is UploadStatus.FAILED:
        return PushKind.FAILED
    if event.type is EventType.PROCESSING_COMPLETED and event.status is UploadStatus.READY:
        return PushKind.COMPLETED
    return None


@dataclass(frozen=True, slots=True)
class Person:
    user_id: uuid.UUID
    role: str
    timezone: str  # effective: user's, else the tenant's
    locale: str  # effective: user's, else the tenant's
    prefs: Preferences


@dataclass(frozen=True, slots=True)
class Target:
    person: Person
    audience: Audience
    critical: bool


def audience(kind: PushKind, uploader: Person | None, admins: Sequence[Person]) -> list[Target]:
    """Everyone the event concerns, preferences aside: their inbox keeps it even when the
    push is muted or held back by quiet hours (preferences govern interruptions only)."""
    targets: list[Target] = []
    if uploader is not None:
        targets.append(Target(uploader, Audience.UPLOADER, kind in CRITICAL_FOR_UPLOADER))
    if kind is PushKind.QUARANTINED:
        targets += [
            Target(a, Audience.ADMIN, critical=False)
            for a in admins
            if a.role == "admin" and (uploader is None or a.user_id != uploader.user_id)
        ]
    return targets


def choose(kind: PushKind, uploader: Person | None, admins: Sequence[Person], now: datetime) -> list[Target]:
    targets: list[Target] = []
    if uploader is not None:
        critical = kind in CRITICAL_FOR_UPLOADER
        if critical or (
            uploader.prefs.wants_push(kind) and not uploader.prefs.quiet_at(now, uploader.timezone)
        ):
            targets.append(Target(uploader, Audience.UPLOADER, critical))
    if kind is PushKind.QUARANTINED:
        for admin in admins:
            if uploader is not None and admin.user_id == uploader.user_id:
                continue
            if admin.role != "admin":
                continue
            if admin.prefs.wants_push(PushKind.QUARANTINED) and not admin.prefs.quiet_at(now, admin.timezone):
                targets.append(Target(admin, Audience.ADMIN, critical=False))
    return targets
