"""File facts from one streamed pass: size, sha256, sniffed MIME type."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from processors.common.sniff import SNIFF_BYTES, sniff


@dataclass(frozen=True, slots=True)
class FileFacts:
    size: int
    sha256: str
    sniffed_type: str | None


def file_facts(chunks: Iterable[bytes]) -> FileFacts:
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    for chunk in chunks:
        if len(head) < SNIFF_BYTES:
            head.extend(chunk[: SNIFF_BYTES - len(head)])
        digest.update(chunk)
        size += len(chunk)
    return FileFacts(size=size, sha256=digest.hexdigest(), sniffed_type=sniff(bytes(head)))


def size_problem(declared: int, stored: int, read: int) -> str | None:
    """Why the stored object is not the file that was declared (None when it is).
    ``declared`` 0 means no size was declared; ``read`` is what the streamed pass counted."""
    if read != stored:
        return f"S3 reported {stored} bytes but {read} were read"
    if declared and declared != stored:
        return f"S3 stored {stored} bytes, {declared} were declared"
    return None


def normalized_sha256(value: str) -> str | None:
    """A declared SHA-256 as lower-case hex: 64 hex digits, or the base64 of the 32 bytes
    (the form of ``x-amz-checksum-sha256``); None when it is neither."""
    text = value.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text).hex()
        except ValueError:
            return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def checksum_problem(declared: str, measured: str) -> str | None:
    """Why ``measured`` (hex) is not the declared SHA-256 (None when it is)."""
    wanted = normalized_sha256(declared)
    if wanted is None:
        return f"the declared sha256 {declared[:80]!r} is not a SHA-256"
    if wanted != measured.lower():
        return f"sha256 of the stored bytes is {measured}, {wanted} was declared"
    return None
