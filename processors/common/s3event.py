"""The S3 "Object Created" event as EventBridge delivers it inside an SQS message body."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from core.keys import parse_key


class InvalidS3Event(ValueError):
    """The message body is not an EventBridge S3 Object Created event."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One stored object version of an upload's original file."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    sequencer: str
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    upload_id: uuid.UUID

    @property
    def object_version(self) -> str:
        """Identity of this object version: the version id where versioning is on, else the
        ETag plus the sequencer S3 assigns to each write (a redelivery carries the same)."""
        if self.version_id and self.version_id != "null":
            return f"v:{self.version_id}"
        return f"e:{self.etag}:{self.sequencer}"

    def get_kwargs(self) -> dict[str, str]:
        """Arguments pinning S3 reads to exactly this version."""
        kwargs = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id and self.version_id != "null":
            kwargs["VersionId"] = self.version_id
        elif self.etag:
            kwargs["IfMatch"] = f'"{self.etag.strip(chr(34))}"'
        return kwargs


def parse_body(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidS3Event("body is not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidS3Event("body is not a JSON object")
    return raw


def object_ref(body: str | bytes | dict[str, Any]) -> ObjectRef | None:
    """The upload original the event is about; None for an event about any other object
    (derivatives written by the processors themselves also raise events)."""
    raw = parse_body(body)
    if raw.get("source") != "aws.s3" or raw.get("detail-type") != "Object Created":
        raise InvalidS3Event(f"unexpected event {raw.get('source')!r}/{raw.get('detail-type')!r}")
    detail = raw.get("detail")
    if not isinstance(detail, dict):
        raise InvalidS3Event("detail missing")
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    key = obj.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InvalidS3Event("detail.bucket.name or detail.object.key missing")
    parts = parse_key(key)
    if parts is None or parts["kind"] != "original":
        return None
    size = obj.get("size", 0)
    return ObjectRef(
        bucket=bucket,
        key=key,
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else 0,
        etag=str(obj.get("etag") or obj.get("eTag") or "").strip('"'),  # AWS: etag; moto: eTag
        version_id=obj.get("version-id") or None,
        sequencer=str(obj.get("sequencer") or ""),
        tenant_id=uuid.UUID(parts["tenant_id"]),
        project_id=uuid.UUID(parts["project_id"]),
        upload_id=uuid.UUID(parts["upload_id"]),
    )
