"""PDF: first-page preview, text layer, OCR when there is no text layer.

PDFium is not thread-safe: every call into it holds :data:`PDFIUM_LOCK`. Tesseract runs
outside the lock (it is a separate process).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pypdfium2 as pdfium
import pytesseract
from PIL import Image

from core.status import ReasonCode
from processors.common.outcome import Rejected

PDFIUM_LOCK = threading.Lock()
PREVIEW_MAX_WIDTH = 800
PREVIEW_MAX_SCALE = 2.0
OCR_DPI = 300
OCR_MAX_SIDE = 5000
OCR_LANGUAGES = "spa+eng"
MAX_TEXT_CHARS = 5_000_000
_ERR_PASSWORD = 4
_ERR_SECURITY = 5


@dataclass(frozen=True, slots=True)
class DocumentResult:
    preview_png: bytes
    preview_width: int
    preview_height: int
    pages: int
    text: str
    text_source: Literal["text_layer", "ocr", "none"]
    ocr_pages: int


# Called before each unit of per-page work: (phase, page index). The sandbox's child sends
# it to the parent, which enforces the time limit per page between two calls.
Heartbeat = Callable[[str, int], None]


def _no_heartbeat(phase: str, index: int) -> None:
    return None


def process_pdf(
    source: str | Path | bytes,
    *,
    ocr_max_pages: int,
    languages: str = OCR_LANGUAGES,
    max_pages: int | None = None,
    ocr_page_seconds: float | None = None,
    heartbeat: Heartbeat = _no_heartbeat,
) -> DocumentResult:
    """Preview, text and page count of a PDF; raises :class:`Rejected` for encrypted or
    corrupt files, for more than ``max_pages`` pages and for a page Tesseract does not read
    within ``ocr_page_seconds`` (``too_complex``). The time limits of rendering are the
    sandbox's (:mod:`processors.document.sandbox`): it watches ``heartbeat``."""
    with PDFIUM_LOCK:
        pdf = _open(source)
        try:
            pages = len(pdf)
            if pages == 0:
                raise Rejected(ReasonCode.CORRUPT, "the PDF has no pages")
            if max_pages is not None and pages > max_pages:
                raise Rejected(ReasonCode.TOO_COMPLEX, f"{pages} pages: more than the limit of {max_pages}")
            heartbeat("preview", 0)
            preview = _render(pdf, 0, max_width=PREVIEW_MAX_WIDTH)
            text = _text_layer(pdf, heartbeat)
            ocr_images = []
            if not text.strip():
                for i in range(min(pages, ocr_max_pages)):
                    heartbeat("render", i)
                    ocr_images.append(_render_for_ocr(pdf, i))
        except pdfium.PdfiumError as exc:
            raise Rejected(ReasonCode.CORRUPT, f"corrupt PDF: {exc}") from exc
        finally:
            pdf.close()
    source_kind: Literal["text_layer", "ocr", "none"] = "text_layer" if text.strip() else "none"
    if ocr_images:
        read = []
        for i, img in enumerate(ocr_images):
            heartbeat("ocr", i)
            read.append(_ocr(img, i, languages, ocr_page_seconds))
        text = "\n\n".join(read)
        source_kind = "ocr" if text.strip() else "none"
    buffer = io.BytesIO()
    preview.save(buffer, format="PNG", optimize=False)
    return DocumentResult(
        preview_png=buffer.getvalue(),
        preview_width=preview.width,
        preview_height=preview.height,
        pages=pages,
        text=text[:MAX_TEXT_CHARS],
        text_source=source_kind,
        ocr_pages=len(ocr_images),
    )


def _ocr(image: Image.Image, index: int, languages: str, seconds: float | None) -> str:
    """Tesseract on one page; it is killed after ``seconds`` (pytesseract's timeout)."""
    try:
        return str(pytesseract.image_to_string(image, lang=languages, timeout=seconds or 0)).strip()
    except RuntimeError as exc:
        if "timeout" not in str(exc).lower():
            raise
        raise Rejected(
            ReasonCode.TOO_COMPLEX, f"OCR of page {index + 1} took longer than the limit of {seconds:g} s"
        ) from exc


def _open(source: str | Path | bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code in (_ERR_PASSWORD, _ERR_SECURITY):
            raise Rejected(ReasonCode.ENCRYPTED, "the PDF is encrypted (password protected)") from exc
        raise Rejected(ReasonCode.CORRUPT, f"corrupt PDF: {exc}") from exc


def _render(pdf: pdfium.PdfDocument, index: int, *, max_width: int) -> Image.Image:
    page = pdf[index]
    try:
        width_pt = page.get_width()
        scale = min(max_width / width_pt, PREVIEW_MAX_SCALE) if width_pt > 0 else 1.0
        image = page.render(scale=scale).to_pil()
    finally:
        page.close()
    if image.width > max_width:  # rounding of odd page boxes
        image = image.resize((max_width, max(1, round(image.height * max_width / image.width))))
    return image.convert("RGB")


def _render_for_ocr(pdf: pdfium.PdfDocument, index: int) -> Image.Image:
    page = pdf[index]
    try:
        width_pt, height_pt = page.get_size()
        scale = min(OCR_DPI / 72, OCR_MAX_SIDE / max(width_pt, height_pt, 1))
        return page.render(scale=scale, grayscale=True).to_pil().convert("L")
    finally:
        page.close()


def _text_layer(pdf: pdfium.PdfDocument, heartbeat: Heartbeat = _no_heartbeat) -> str:
    parts: list[str] = []
    total = 0
    for index in range(len(pdf)):
        heartbeat("text", index)
        page = pdf[index]
        try:
            textpage = page.get_textpage()
            try:
                chunk = textpage.get_text_bounded()
            finally:
                textpage.close()
        finally:
            page.close()
        parts.append(chunk)
        total += len(chunk)
        if total >= MAX_TEXT_CHARS:
            break
    return "\n\n".join(parts)
