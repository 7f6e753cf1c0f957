"""The limits, piece by piece: the committed clamd configuration and what a real clamd
running it answers, the PDF sandbox's per-page and per-file limits and page cap, the
declared-checksum comparison, and the image pixel limit against the image function's
memory (measured peak)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from core.resources import PROCESSORS
from core.settings import Settings
from core.status import ReasonCode
from devstack.clamd import CONFIG_TEMPLATE, EmbeddedClamd
from processors.common.outcome import Rejected
from processors.document.sandbox import DocumentLimits, process_pdf_limited
from processors.image.logic import PEAK_BYTES_PER_PIXEL, make_thumbnails, pixel_budget
from processors.metadata.logic import checksum_problem, normalized_sha256, size_problem
from processors.scan.logic import scan_stream, verdict_reason
from tests.pipeline import samples


def _conf(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KM]?)", size).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "K": 1024, "M": 1024**2}[unit]


def test_one_clamd_configuration_alerts_on_skipped_content(clamd: EmbeddedClamd) -> None:
    committed = _conf(CONFIG_TEMPLATE)
    assert committed["AlertExceedsMax"] == "yes" and committed["AlertEncrypted"] == "yes"
    # the processor refuses larger files itself: clamd is never handed more than it takes whole
    default_scan_max = Settings().scan_max_bytes
    assert default_scan_max <= _bytes(committed["StreamMaxLength"]) <= _bytes(committed["MaxFileSize"])
    assert 0 < int(committed["MaxRecursion"]) <= 17 and 0 < int(committed["MaxFiles"]) <= 10000
    # the test and dev clamd run the committed limits; only its address and folders differ
    running = _conf(clamd.dir / "clamd.conf")
    for key, value in committed.items():
        if key not in {"Foreground", "TCPSocket", "DatabaseDirectory", "LogFile", "TemporaryDirectory"}:
            assert running[key] == value, key


def test_clamd_reports_a_document_nested_past_its_limit(clamd: EmbeddedClamd) -> None:
    deep = scan_stream(iter([samples.nested_docx()]), clamd_url=clamd.url, max_bytes=10**7)
    assert deep.infected and (deep.signature or "").startswith("Heuristics.Limits.Exceeded")
    assert verdict_reason(deep.signature or "") == ReasonCode.SCAN_LIMIT_EXCEEDED
    shallow = scan_stream(iter([samples.nested_docx(depth=3)]), clamd_url=clamd.url, max_bytes=10**7)
    assert not shallow.infected


def test_alert_encrypted_flags_locked_pdfs_not_restricted_ones(clamd: EmbeddedClamd, tmp_path: Path) -> None:
    """AlertEncrypted: a PDF that needs a password to open is flagged (it fails `encrypted`);
    one with only an owner password (printing restricted, opens for everyone) is not, and
    is read as usual."""
    locked = scan_stream(
        iter([samples.text_layer_pdf(password_protected=True)]), clamd_url=clamd.url, max_bytes=10**7
    )
    assert locked.infected and verdict_reason(locked.signature or "") == ReasonCode.ENCRYPTED
    restricted = scan_stream(iter([samples.restricted_pdf()]), clamd_url=clamd.url, max_bytes=10**7)
    assert not restricted.infected
    result = process_pdf_limited(_pdf(tmp_path, samples.restricted_pdf()), DocumentLimits(30, 60, 10, 3))
    assert samples.RESTRICTED_SENTENCE in result.text


def test_verdicts_map_to_reasons() -> None:
    assert verdict_reason("Heuristics.Limits.Exceeded.MaxRecursion") == ReasonCode.SCAN_LIMIT_EXCEEDED
    assert verdict_reason("Heuristics.Limits.Exceeded.MaxScanTime") == ReasonCode.SCAN_LIMIT_EXCEEDED
    assert verdict_reason("Heuristics.Encrypted.Zip") == ReasonCode.ENCRYPTED
    assert verdict_reason("Eicar-Test-Signature") == ReasonCode.INFECTED
    assert verdict_reason("Win.Trojan.Agent-1") == ReasonCode.INFECTED


def _pdf(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    return str(path)


def test_sandbox_reads_a_pdf_like_the_in_process_logic(tmp_path: Path) -> None:
    result = process_pdf_limited(_pdf(tmp_path, samples.text_layer_pdf()), DocumentLimits(30, 60, 10, 3))
    assert result.text_source == "text_layer" and samples.TEXT_LAYER_SENTENCE in result.text
    with pytest.raises(Rejected) as encrypted:
        process_pdf_limited(
            _pdf(tmp_path, samples.text_layer_pdf(password_protected=True)), DocumentLimits(30, 60, 10, 3)
        )
    assert encrypted.value.reason == ReasonCode.ENCRYPTED


def test_sandbox_page_cap(tmp_path: Path) -> None:
    with pytest.raises(Rejected) as capped:
        process_pdf_limited(
            _pdf(tmp_path, samples.noisy_scanned_pdf(pages=3, side=200)), DocumentLimits(30, 60, 2, 0)
        )
    assert capped.value.reason == ReasonCode.TOO_COMPLEX and "3 pages" in capped.value.message


def test_sandbox_stops_ocr_past_the_page_limit_and_leaves_no_tesseract(tmp_path: Path) -> None:
    path = _pdf(tmp_path, samples.noisy_scanned_pdf(pages=2))
    with pytest.raises(Rejected) as slow:
        process_pdf_limited(
            path, DocumentLimits(page_seconds=0.5, file_seconds=60, max_pages=10, ocr_max_pages=2)
        )
    assert slow.value.reason == ReasonCode.TOO_COMPLEX and "page 1" in slow.value.message
    assert _settled(_tesseracts) == []


def test_sandbox_stops_past_the_file_limit(tmp_path: Path) -> None:
    path = _pdf(tmp_path, samples.noisy_scanned_pdf(pages=2))
    with pytest.raises(Rejected) as slow:
        process_pdf_limited(
            path, DocumentLimits(page_seconds=60, file_seconds=0.5, max_pages=10, ocr_max_pages=2)
        )
    assert slow.value.reason == ReasonCode.TOO_COMPLEX and "the PDF took longer" in slow.value.message
    assert _settled(_tesseracts) == []


def _settled(find: Callable[[], list[int]], within: float = 10) -> list[int]:
    """``find()`` once it is empty, or its last answer after ``within`` seconds: a SIGKILLed
    process lingers until the kernel has torn it down."""
    deadline = time.monotonic() + within
    while (found := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _tesseracts() -> list[int]:
    """Tesseract processes descended from this test process."""
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"tesseract" in cmd.split(b"\0")[0] and _descends(int(entry.name), mine, stat):
            found.append(int(entry.name))
    return found


def _descends(pid: int, ancestor: int, stat: str) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def test_declared_checksum_and_size() -> None:
    digest = hashlib.sha256(b"plano").hexdigest()
    assert checksum_problem(digest, digest) is None
    assert checksum_problem(digest.upper(), digest) is None
    b64 = __import__("base64").b64encode(hashlib.sha256(b"plano").digest()).decode()
    assert normalized_sha256(b64) == digest and checksum_problem(b64, digest) is None
    assert "declared" in (checksum_problem(hashlib.sha256(b"otro").hexdigest(), digest) or "")
    assert "not a SHA-256" in (checksum_problem("abc", digest) or "")
    assert size_problem(0, 10, 10) is None and size_problem(10, 10, 10) is None
    assert "1000 were declared" in (size_problem(1000, 1_000_198, 1_000_198) or "")


def test_pixel_limit_fits_the_image_function_memory() -> None:
    image = next(p for p in PROCESSORS if p.name == "image")
    assert Settings().image_max_pixels <= pixel_budget(image.memory_mb)


def test_measured_peak_memory_per_pixel_is_within_the_budget_constant() -> None:
    """An RGBA PNG (the worst case: decoded whole, flattened, copied) of 16 MP, thumbnailed in
    a fork whose peak RSS is reset first."""
    side = 4000
    source = Image.linear_gradient("L").resize((side, side)).convert("RGBA")
    buffer = io.BytesIO()
    source.save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    del source
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            Path("/proc/self/clear_refs").write_text("5")
            start = _hwm_kib()
            make_thumbnails(io.BytesIO(data), max_pixels=side * side)
            os.write(write, str(_hwm_kib() - start).encode())
        finally:
            os._exit(0)
    os.close(write)
    peak_kib = int(os.read(read, 64) or b"0")
    os.close(read)
    os.waitpid(pid, 0)
    per_pixel = peak_kib * 1024 / (side * side)
    assert 0 < per_pixel <= PEAK_BYTES_PER_PIXEL, per_pixel


def _hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_an_orphaned_pdf_child_ends_itself_past_the_file_limit(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-file leaves its PDF child without a parent to kill it: the
    child's watchdog kills it (and its Tesseract) once the file limit and a grace are over."""
    path = _pdf(tmp_path, samples.noisy_scanned_pdf(pages=3))
    script = (
        "import multiprocessing, sys\n"
        "from processors.document.sandbox import DocumentLimits, _child\n"
        "reader, writer = multiprocessing.Pipe(duplex=False)\n"
        f"_child(writer, {path!r}, DocumentLimits(page_seconds=600, file_seconds=0.5, max_pages=10, "
        "ocr_max_pages=3))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        code = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert code == -signal.SIGKILL, "killed by its watchdog, not finished"
    assert _settled(lambda: _group_members(child.pid)) == [], "its Tesseract went with it"


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found
