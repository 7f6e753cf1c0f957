"""PDF work under time limits: :func:`processors.document.logic.process_pdf` in a child
process that the caller kills when one page (render, text layer or OCR) or the whole file
takes longer than its limit. A file over a limit fails with ``too_complex`` and never holds
a worker thread: PDFium's C calls cannot be interrupted in-process, a process can be killed.

The child reports a heartbeat before each unit of per-page work over a pipe; the parent
waits on the pipe with the tighter of the two deadlines. The child leads its own process
group, so Tesseract (its child) dies with it. Children are forked from a forkserver that
imported the PDF stack once (cheap per file, and never a fork of the multi-threaded worker).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from core.status import ReasonCode
from processors.common.outcome import Rejected
from processors.document.logic import DocumentResult, process_pdf

_PRELOAD = ["processors.document.logic"]
_context_lock = threading.Lock()
_context: Any = None


class DocumentWorkerDied(RuntimeError):
    """The child ended without an answer (a crash in PDFium, out of memory): retried, then
    dead-lettered like any other processor error."""


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    page_seconds: float
    file_seconds: float
    max_pages: int
    ocr_max_pages: int


def _mp_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(_PRELOAD)
            _context = ctx
        return _context


WATCHDOG_GRACE_SECONDS = 5.0


def _watchdog(seconds: float) -> None:
    """The child's own end: should its parent die (a worker SIGKILLed mid-file), nobody
    would kill it, so past the file limit (and a grace) it kills its group itself."""

    def end() -> None:
        if os.getpgid(0) == os.getpid():  # the leader of its own group: Tesseract too
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()


def _child(conn: Connection, path: str, limits: DocumentLimits) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # own group: the parent's kill reaches Tesseract too
    _watchdog(limits.file_seconds + WATCHDOG_GRACE_SECONDS)

    def heartbeat(phase: str, index: int) -> None:
        conn.send(("beat", phase, index))

    try:
        result = process_pdf(
            path,
            ocr_max_pages=limits.ocr_max_pages,
            max_pages=limits.max_pages,
            ocr_page_seconds=limits.page_seconds,
            heartbeat=heartbeat,
        )
    except Rejected as exc:
        conn.send(("rejected", str(exc.reason), exc.message))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("done", result))
    finally:
        conn.close()


def process_pdf_limited(path: str, limits: DocumentLimits) -> DocumentResult:
    """:func:`process_pdf` of the file at ``path`` within ``limits``. Raises
    :class:`Rejected` (the PDF's own problem, or ``too_complex`` past a limit) or
    :class:`DocumentWorkerDied`."""
    ctx = _mp_context()
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(writer, path, limits), name="buildpeer-pdf", daemon=True)
    started = time.monotonic()
    child.start()
    writer.close()
    last_beat, where = started, ("open", 0)
    try:
        while True:
            now = time.monotonic()
            file_left = started + limits.file_seconds - now
            page_left = last_beat + limits.page_seconds - now
            if file_left <= 0:
                raise Rejected(
                    ReasonCode.TOO_COMPLEX,
                    f"the PDF took longer than the limit of {limits.file_seconds:g} s "
                    f"(at page {where[1] + 1}, {where[0]})",
                )
            if page_left <= 0:
                raise Rejected(
                    ReasonCode.TOO_COMPLEX,
                    f"page {where[1] + 1} ({where[0]}) took longer than the limit of "
                    f"{limits.page_seconds:g} s",
                )
            if not reader.poll(min(file_left, page_left)):
                continue
            try:
                message = reader.recv()
            except EOFError:
                child.join(5)
                raise DocumentWorkerDied(
                    f"the PDF process ended without an answer (exit {child.exitcode})"
                ) from None
            kind = message[0]
            if kind == "beat":
                last_beat, where = time.monotonic(), (message[1], message[2])
            else:
                child.join(10)  # it answered: it exits by itself (nothing left to kill)
                if kind == "done":
                    result: DocumentResult = message[1]
                    return result
                if kind == "rejected":
                    raise Rejected(ReasonCode(message[1]), message[2])
                raise DocumentWorkerDied(f"the PDF process failed: {message[1]}")
    finally:
        reader.close()
        _stop(child)


def _stop(child: Any) -> None:
    """End the child and its group (Tesseract included) unless it ended by itself; reap it.
    A child that answered ends at once; one past a limit is killed without a wait."""
    if child.is_alive() and child.pid is not None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()  # not yet its own group leader
    child.join(10)
    with contextlib.suppress(ValueError):
        child.close()
