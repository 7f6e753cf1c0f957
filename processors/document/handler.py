"""Lambda: PDF first-page preview (≤ 800 px wide), text layer, OCR (spa+eng) when empty; in
a child process under a time limit per page and per file, and a page cap (``too_complex``)."""

from __future__ import annotations

import tempfile
from typing import Any

from core.keys import derived_key
from processors.common.outcome import DerivativeFile, StepOutcome
from processors.common.pipeline import handle_batch
from processors.common.reducer import DOCUMENT
from processors.common.runtime import Runtime
from processors.common.s3event import ObjectRef
from processors.common.sniff import SNIFF_BYTES, require_declared
from processors.common.store import UploadRow
from processors.document.sandbox import DocumentLimits, process_pdf_limited

CHUNK_BYTES = 1024 * 1024


def work(runtime: Runtime, ref: ObjectRef, upload: UploadRow) -> StepOutcome:
    body = runtime.s3.get_object(**ref.get_kwargs())["Body"]
    with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
        try:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                tmp.write(chunk)
        finally:
            body.close()
        tmp.flush()
        tmp.seek(0)
        require_declared(upload.declared_type, tmp.read(SNIFF_BYTES))
        settings = runtime.settings
        limits = DocumentLimits(
            page_seconds=settings.document_page_seconds,
            file_seconds=settings.document_file_seconds,
            max_pages=settings.document_max_pages,
            ocr_max_pages=settings.ocr_max_pages,
        )
        result = process_pdf_limited(tmp.name, limits)

    def put(name: str, data: bytes, mime: str) -> str:
        key = derived_key(ref.tenant_id, ref.project_id, ref.upload_id, name)
        runtime.s3.put_object(Bucket=ref.bucket, Key=key, Body=data, ContentType=mime)
        return key

    preview_key = put("preview.png", result.preview_png, "image/png")
    text_bytes = result.text.encode("utf-8")
    text_key = put("text.txt", text_bytes, "text/plain; charset=utf-8")
    facts = {"pages": result.pages, "text_source": result.text_source, "ocr_pages": result.ocr_pages}
    return StepOutcome(
        state="done",
        result={**facts, "text_chars": len(result.text)},
        metadata=facts,
        derivatives=(
            DerivativeFile(
                "preview",
                preview_key,
                "image/png",
                len(result.preview_png),
                result.preview_width,
                result.preview_height,
            ),
            DerivativeFile("text", text_key, "text/plain; charset=utf-8", len(text_bytes)),
        ),
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, DOCUMENT, work)
