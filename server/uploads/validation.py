"""Validation of a new upload: who names which project, what file, which type, how big.

Pure: the Companion routes (query string or JSON body) and the native API both build an
:class:`UploadRequest` here; anything wrong raises :class:`InvalidUpload` (a 4xx).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.keys import UnsafeFileName, safe_name
from core.settings import Settings

MAX_METADATA_FIELDS = 32
MAX_METADATA_VALUE = 1024
MAX_FILE_NAME = 1024


class InvalidUpload(ValueError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class UploadRequest:
    project_id: uuid.UUID
    file_name: str  # as the client named it (shown to people)
    safe_name: str  # what goes into the S3 key
    content_type: str
    size: int | None  # None when the client did not say (stock Uppy does not)
    metadata: dict[str, str]
    sha256: str | None = None  # lower-case hex SHA-256 the client declared for the whole file


def _file_name(raw: Any) -> tuple[str, str]:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidUpload("invalid_file_name", "filename is required")
    if len(raw) > MAX_FILE_NAME:
        raise InvalidUpload("invalid_file_name", f"filename is longer than {MAX_FILE_NAME} characters")
    if "/" in raw or "\\" in raw or raw.strip() in (".", "..") or "\x00" in raw:
        raise InvalidUpload("invalid_file_name", "filename must be a plain name, not a path")
    if any(ord(ch) < 32 for ch in raw):
        raise InvalidUpload("invalid_file_name", "filename contains control characters")
    if any(unicodedata.category(ch) == "Cf" for ch in raw):
        # bidi overrides and zero-width characters make a name display as another one
        # ("factura\u202egpj.exe" shows as "factura exe.jpg")
        raise InvalidUpload(
            "invalid_file_name", "filename contains invisible formatting characters (bidi or zero-width)"
        )
    try:
        return raw, safe_name(raw)
    except UnsafeFileName as exc:
        raise InvalidUpload("invalid_file_name", str(exc)) from None


def _content_type(raw: Any, settings: Settings) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidUpload("invalid_type", "type (the file's MIME type) is required")
    mime = raw.split(";", 1)[0].strip().lower()
    if mime not in settings.allowed_types:
        raise InvalidUpload("type_not_allowed", f"files of type {mime!r} are not accepted", 415)
    return mime


def parse_size(raw: Any, settings: Settings) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidUpload("invalid_size", "size must be a whole number of bytes")
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            raise InvalidUpload("invalid_size", "size must be a whole number of bytes") from None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int):
        raise InvalidUpload("invalid_size", "size must be a whole number of bytes")
    if raw < 0:
        raise InvalidUpload("invalid_size", "size cannot be negative")
    if raw > settings.max_upload_bytes:  # a declared size over the documented maximum: 400
        raise InvalidUpload(
            "too_large", f"files larger than {settings.max_upload_bytes} bytes are not accepted"
        )
    return raw


HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def parse_sha256(raw: Any, what: str = "sha256") -> str | None:
    """A SHA-256 as 64 hex digits (or S3's base64 of the 32 bytes) → lower-case hex; None
    when absent."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if HEX_SHA256.fullmatch(text):
            return text.lower()
        if len(text) == 44:
            try:
                digest = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) == 32:
                return digest.hex()
    raise InvalidUpload(
        "invalid_checksum", f"{what} must be a SHA-256 (64 hex digits or 44 base64 characters)"
    )


def sha256_base64(hex_digest: str) -> str:
    """The form S3 wants in ``x-amz-checksum-sha256``."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        raise InvalidUpload("invalid_metadata", "metadata.projectId is required")
    if not isinstance(raw, Mapping):
        raise InvalidUpload("invalid_metadata", "metadata must be an object")
    if len(raw) > MAX_METADATA_FIELDS:
        raise InvalidUpload("invalid_metadata", f"at most {MAX_METADATA_FIELDS} metadata fields")
    clean: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            continue  # not storable as a field name (OpenAPI 3.0 cannot state key lengths): dropped
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidUpload("invalid_metadata", f"metadata.{key} must be a string or number")
        text = str(value)
        if len(text) > MAX_METADATA_VALUE:
            raise InvalidUpload("invalid_metadata", f"metadata.{key} is too long")
        clean[key] = text
    return clean


def parse_upload_request(
    *,
    filename: Any,
    content_type: Any,
    metadata: Any,
    size: Any,
    settings: Settings,
    sha256: Any = None,
) -> UploadRequest:
    meta = _metadata(metadata)
    project = meta.get("projectId")
    if not project:
        raise InvalidUpload("invalid_metadata", "metadata.projectId is required")
    try:
        project_id = uuid.UUID(project)
    except ValueError:
        raise InvalidUpload("invalid_metadata", "metadata.projectId must be a UUID") from None
    if size is None and "size" in meta:
        size = meta["size"]
    name, cleaned = _file_name(filename)
    return UploadRequest(
        project_id=project_id,
        file_name=name,
        safe_name=cleaned,
        content_type=_content_type(content_type, settings),
        size=parse_size(size, settings),
        metadata=meta,
        sha256=parse_sha256(sha256),
    )


def bracket_metadata(query: Mapping[str, str]) -> dict[str, str] | None:
    """``metadata[projectId]=P&metadata[name]=n`` (Uppy's query form) → a dict, or None."""
    found: dict[str, str] = {}
    for key, value in query.items():
        if key.startswith("metadata[") and key.endswith("]"):
            found[key[len("metadata[") : -1]] = value
    return found or None
