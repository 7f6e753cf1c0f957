"""S3 key layout (DESIGN §3). Every key lives under its tenant's prefix."""

from __future__ import annotations

import re
import unicodedata
import uuid

DERIVATIVE_NAMES = frozenset({"thumb-200.jpg", "thumb-800.jpg", "preview.png", "text.txt"})
MAX_NAME_LENGTH = 200

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafeFileName(ValueError):
    pass


def tenant_prefix(tenant_id: uuid.UUID | str) -> str:
    return f"tenant-{tenant_id}/"


def upload_prefix(tenant_id: uuid.UUID | str, project_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> str:
    return f"tenant-{tenant_id}/project-{project_id}/uploads/{upload_id}/"


def safe_name(file_name: str) -> str:
    """A file name reduced to ``[A-Za-z0-9._-]``, never a path, never hidden.

    Raises :class:`UnsafeFileName` for names that are empty or path tricks once cleaned.
    """
    if not file_name or "\x00" in file_name:
        raise UnsafeFileName("file name is empty or contains NUL")
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", ".."):
        raise UnsafeFileName("file name is a path, not a name")
    normalized = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", normalized).strip("._") or "file"
    if len(cleaned) > MAX_NAME_LENGTH:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and len(ext) <= 10:
            cleaned = stem[: MAX_NAME_LENGTH - len(ext) - 1] + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME_LENGTH]
    return cleaned


def original_key(
    tenant_id: uuid.UUID | str,
    project_id: uuid.UUID | str,
    upload_id: uuid.UUID | str,
    file_name: str,
) -> str:
    return f"{upload_prefix(tenant_id, project_id, upload_id)}original/{safe_name(file_name)}"


def derived_key(
    tenant_id: uuid.UUID | str,
    project_id: uuid.UUID | str,
    upload_id: uuid.UUID | str,
    name: str,
) -> str:
    if name not in DERIVATIVE_NAMES:
        raise ValueError(f"unknown derivative {name!r}")
    return f"{upload_prefix(tenant_id, project_id, upload_id)}derived/{name}"


_KEY = re.compile(
    r"^tenant-(?P<tenant_id>[0-9a-f-]{36})/project-(?P<project_id>[0-9a-f-]{36})/"
    r"uploads/(?P<upload_id>[0-9a-f-]{36})/(?P<kind>original|derived)/(?P<name>[^/]+)$"
)


def parse_key(key: str) -> dict[str, str] | None:
    """Split a key of our layout into its parts, or None when it is not one of ours."""
    m = _KEY.match(key)
    return m.groupdict() if m else None


def is_under_tenant(key: str, tenant_id: uuid.UUID | str) -> bool:
    return key.startswith(tenant_prefix(tenant_id)) and ".." not in key.split("/")
