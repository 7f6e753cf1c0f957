"""File facts from one streamed pass: size, sha256, sniffed MIME type."""

from __future__ import annotations

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
