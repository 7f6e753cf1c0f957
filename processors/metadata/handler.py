"""Lambda: metadata (size, sniffed type, sha256) of the pinned object version. Marks the
upload ``uploaded`` and publishes ``upload-completed``; a stored size other than the declared
one fails it (``size_mismatch``), and so does a sha256 other than the declared one
(``checksum_mismatch``)."""

from __future__ import annotations

from typing import Any

from core.status import ReasonCode
from processors.common.outcome import StepOutcome
from processors.common.pipeline import handle_batch
from processors.common.reducer import METADATA
from processors.common.runtime import Runtime
from processors.common.s3event import ObjectRef
from processors.common.store import UploadRow
from processors.metadata.logic import checksum_problem, file_facts, size_problem

CHUNK_BYTES = 1024 * 1024


def work(runtime: Runtime, ref: ObjectRef, upload: UploadRow) -> StepOutcome:
    stored = int(runtime.s3.head_object(**ref.get_kwargs())["ContentLength"])
    body = runtime.s3.get_object(**ref.get_kwargs())["Body"]
    try:
        facts = file_facts(body.iter_chunks(CHUNK_BYTES))
    finally:
        body.close()
    result: dict[str, Any] = {"size": stored, "sha256": facts.sha256, "sniffed_type": facts.sniffed_type}
    metadata: dict[str, Any] = {"size": stored}
    sha_error = checksum_problem(upload.declared_sha256, facts.sha256) if upload.declared_sha256 else None
    verified = None if not upload.declared_sha256 else sha_error is None
    common: dict[str, Any] = {
        "metadata": metadata,
        "sniffed_type": facts.sniffed_type,
        "sha256": facts.sha256,
        "stored_size": stored,
        "sha256_verified": verified,
    }
    size_error = size_problem(upload.size_bytes, stored, facts.size)
    if size_error is not None:
        metadata["declared_size"] = upload.size_bytes
        return StepOutcome(
            state="failed",
            reason=ReasonCode.SIZE_MISMATCH,
            result={**result, "error": size_error, "declared_size": upload.size_bytes},
            **common,
        )
    if sha_error is not None:
        return StepOutcome(
            state="failed",
            reason=ReasonCode.CHECKSUM_MISMATCH,
            result={**result, "error": sha_error, "declared_sha256": upload.declared_sha256},
            **common,
        )
    return StepOutcome(state="done", result={**result, "sha256_verified": verified}, **common)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, METADATA, work)
