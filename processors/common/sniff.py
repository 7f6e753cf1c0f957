"""Magic-byte sniffing: what a file really is, from its first bytes, and whether that
matches the type the client declared. Never trusts a file name or a header the client set."""

from __future__ import annotations

from core.status import ReasonCode
from processors.common.outcome import Rejected

SNIFF_BYTES = 4096

_OOXML = (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
_OLE2 = ("application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint")
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}
_MP4_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V "}

# Sniffed container → the declared types it may legitimately carry.
_COMPATIBLE: dict[str, frozenset[str]] = {
    "image/jpeg": frozenset({"image/jpeg"}),
    "image/png": frozenset({"image/png"}),
    "image/webp": frozenset({"image/webp"}),
    "image/heic": frozenset({"image/heic", "image/heif"}),
    "application/pdf": frozenset({"application/pdf"}),
    "application/zip": frozenset(_OOXML),
    "application/x-ole-storage": frozenset(_OLE2),
    "image/vnd.dwg": frozenset({"image/vnd.dwg", "application/acad"}),
    "video/mp4": frozenset({"video/mp4"}),
    "text/plain": frozenset({"image/vnd.dxf", "application/dxf"}),
}


def sniff(head: bytes) -> str | None:
    """The MIME type the leading bytes prove, or None when they prove nothing we know."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "image/heic"
        if brand in _MP4_BRANDS:
            return "video/mp4"
    if head[:1024].lstrip(b"\xef\xbb\xbf\r\n\t ").startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "application/x-ole-storage"
    if head[:4] == b"AC10" and head[4:6].isdigit():
        return "image/vnd.dwg"
    if head and _is_text(head):
        return "text/plain"
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is still text
        if exc.start < len(head) - 4:
            return False
    return True


def matches_declared(declared: str, sniffed: str | None) -> bool:
    """True when bytes sniffed as ``sniffed`` may be an upload declared as ``declared``."""
    if sniffed is None:
        return False
    return declared.lower() in _COMPATIBLE.get(sniffed, frozenset())


IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"})
DOCUMENT_TYPES = frozenset({"application/pdf"})


def require_declared(declared: str, head: bytes) -> str | None:
    """For processors that parse the content: refuse bytes that are not what was declared
    (the scan reports the same reason; whichever finishes first, the upload's reason is
    ``type_mismatch``, never a parser error about a file of another kind)."""
    sniffed = sniff(head)
    if not matches_declared(declared, sniffed):
        raise Rejected(
            ReasonCode.TYPE_MISMATCH, f"content is {sniffed or 'unrecognised'}, declared {declared}"
        )
    return sniffed
