"""Event schema v1 (DESIGN §3): JSON on SNS/SQS and through the real-time hub.

Consumers ignore unknown fields, treat delivery as at-least-once and out of order,
and never move a status backwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from core.status import UploadStatus

SCHEMA_VERSION = 1


class EventType(StrEnum):
    UPLOAD_COMPLETED = "upload.completed"
    UPLOAD_FAILED = "upload.failed"
    PROCESSING_COMPLETED = "processing.completed"
    UPLOAD_PROGRESS = "upload.progress"
    # The upload was removed (terminal status ``deleted``): published by the server to the
    # hub; no SNS topic carries it.
    UPLOAD_DELETED = "upload.deleted"


# SNS topic that carries each event type (DESIGN §1.2).
TOPIC_FOR_TYPE: dict[EventType, str] = {
    EventType.UPLOAD_COMPLETED: "upload-completed",
    EventType.UPLOAD_FAILED: "upload-failed",
    EventType.PROCESSING_COMPLETED: "processing-completed",
}


class InvalidEvent(ValueError):
    """The message is not a valid v1 event; it names the offending field."""


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    upload_id: uuid.UUID
    user_id: uuid.UUID
    status: UploadStatus
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": str(self.id),
            "type": self.type.value,
            "tenant_id": str(self.tenant_id),
            "project_id": str(self.project_id),
            "upload_id": str(self.upload_id),
            "user_id": str(self.user_id),
            "status": self.status.value,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def new(
        cls,
        type: EventType,
        *,
        tenant_id: uuid.UUID,
        project_id: uuid.UUID,
        upload_id: uuid.UUID,
        user_id: uuid.UUID,
        status: UploadStatus,
        data: dict[str, Any] | None = None,
    ) -> Event:
        return cls(
            type=type,
            tenant_id=tenant_id,
            project_id=project_id,
            upload_id=upload_id,
            user_id=user_id,
            status=status,
            occurred_at=datetime.now(UTC),
            data=data or {},
        )


def _uuid(raw: dict[str, Any], name: str) -> uuid.UUID:
    value = raw.get(name)
    if not isinstance(value, str):
        raise InvalidEvent(f"{name}: expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidEvent(f"{name}: not a UUID") from exc


def parse_event(payload: bytes | str | dict[str, Any]) -> Event:
    """Validate a v1 event. Unknown fields are ignored; anything else wrong raises."""
    if isinstance(payload, dict):
        raw = payload
    else:
        try:
            raw = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("body: not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidEvent("body: expected a JSON object")
    if raw.get("version") != SCHEMA_VERSION:
        raise InvalidEvent(f"version: expected {SCHEMA_VERSION}")
    try:
        etype = EventType(str(raw.get("type")))
    except ValueError as exc:
        raise InvalidEvent("type: unknown event type") from exc
    try:
        status = UploadStatus(str(raw.get("status")))
    except ValueError as exc:
        raise InvalidEvent("status: unknown status") from exc
    occurred = raw.get("occurred_at")
    if not isinstance(occurred, str):
        raise InvalidEvent("occurred_at: expected an RFC 3339 string")
    try:
        occurred_at = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent("occurred_at: not RFC 3339") from exc
    if occurred_at.tzinfo is None:
        raise InvalidEvent("occurred_at: missing UTC offset")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEvent("data: expected an object")
    return Event(
        type=etype,
        tenant_id=_uuid(raw, "tenant_id"),
        project_id=_uuid(raw, "project_id"),
        upload_id=_uuid(raw, "upload_id"),
        user_id=_uuid(raw, "user_id"),
        status=status,
        occurred_at=occurred_at,
        data=data,
        id=_uuid(raw, "id"),
    )
