"""Lambda: metadata (size, sniffed type, sha256). Marks the upload ``uploaded`` and
publishes ``upload-completed``."""

from __future__ import annotations

from typing import Any

from processors.common.outcome import StepOutcome
from processors.common.pipeline import handle_batch
from processors.common.reducer import METADATA
from processors.common.runtime import Runtime
from processors.common.s3event import ObjectRef
from processors.common.store import UploadRow
from processors.metadata.logic import file_facts

CHUNK_BYTES = 1024 * 1024


def work(runtime: Runtime, ref: ObjectRef, upload: UploadRow) -> StepOutcome:
    body = runtime.s3.get_object(**ref.get_kwargs())["Body"]
    try:
        facts = file_facts(body.iter_chunks(CHUNK_BYTES))
    finally:
        body.close()
    result = {"size": facts.size, "sha256": facts.sha256, "sniffed_type": facts.sniffed_type}
    return StepOutcome(
        state="done",
        result=result,
        metadata={"size": facts.size},
        sniffed_type=facts.sniffed_type,
        sha256=facts.sha256,
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, METADATA, work)
