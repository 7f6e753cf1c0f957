"""The security scan: ClamAV over the streamed bytes, then magic bytes vs the declared type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core.status import ReasonCode
from processors.common.outcome import Rejected
from processors.common.sniff import SNIFF_BYTES, matches_declared, sniff
from processors.scan import clamd


@dataclass(frozen=True, slots=True)
class ScanResult:
    infected: bool
    signature: str | None
    sniffed_type: str | None
    scanned_bytes: int


LIMITS_PREFIX = "Heuristics.Limits.Exceeded"
ENCRYPTED_PREFIX = "Heuristics.Encrypted"


def verdict_reason(signature: str) -> ReasonCode:
    """What a clamd ``FOUND`` means for the upload. A limits alert (clamd skipped content past
    one of its Max* limits: ``AlertExceedsMax``) and an encrypted-content alert
    (``AlertEncrypted``) are not malware: clamd could not look at the whole file, so it fails
    (``scan_limit_exceeded`` / ``encrypted``) and is deleted rather than quarantined. Any other
    signature is an infection."""
    if signature.startswith(LIMITS_PREFIX):
        return ReasonCode.SCAN_LIMIT_EXCEEDED
    if signature.startswith(ENCRYPTED_PREFIX):
        return ReasonCode.ENCRYPTED
    return ReasonCode.INFECTED


def check_size(size: int, max_bytes: int) -> None:
    """Refused before reading a byte: a file clamd would not be given whole is never clean."""
    if size > max_bytes:
        raise Rejected(ReasonCode.TOO_LARGE, f"{size} bytes exceeds the scan limit of {max_bytes}")


def type_problem(declared_type: str, allowed: Iterable[str], sniffed: str | None) -> Rejected | None:
    """Why the content may not be accepted as ``declared_type`` (None when it may)."""
    if declared_type.lower() not in {t.lower() for t in allowed}:
        return Rejected(ReasonCode.TYPE_NOT_ALLOWED, f"type {declared_type} is not allowed")
    if not matches_declared(declared_type, sniffed):
        return Rejected(
            ReasonCode.TYPE_MISMATCH, f"content is {sniffed or 'unrecognised'}, declared {declared_type}"
        )
    return None


def scan_stream(chunks: Iterable[bytes], *, clamd_url: str, max_bytes: int) -> ScanResult:
    """Stream ``chunks`` through clamd (never the whole file in memory), sniffing the head
    on the way. Raises :class:`Rejected` (too large) or a clamd error (retry)."""
    head = bytearray()
    total = 0

    def counted() -> Iterator[bytes]:
        nonlocal total
        for chunk in chunks:
            if len(head) < SNIFF_BYTES:
                head.extend(chunk[: SNIFF_BYTES - len(head)])
            total += len(chunk)
            if total > max_bytes:
                raise Rejected(ReasonCode.TOO_LARGE, f"more than {max_bytes} bytes: over the scan limit")
            yield chunk

    verdict = clamd.instream(clamd_url, counted())
    sniffed = sniff(bytes(head))
    return ScanResult(
        infected=verdict.infected,
        signature=verdict.signature,
        sniffed_type=sniffed,
        scanned_bytes=total,
    )
