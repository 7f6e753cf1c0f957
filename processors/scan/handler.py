"""Lambda: security scan (ClamAV INSTREAM + magic bytes). Infected → quarantined."""

from __future__ import annotations

from typing import Any

from core.keys import upload_prefix
from core.quarantine import tag_set as quarantine_tags
from core.status import ReasonCode
from processors.common.outcome import StepOutcome
from processors.common.pipeline import delete_objects, handle_batch
from processors.common.reducer import SCAN
from processors.common.runtime import Runtime
from processors.common.s3event import ObjectRef
from processors.common.store import UploadRow
from processors.scan import clamd
from processors.scan.logic import check_size, scan_stream, type_problem, verdict_reason

CHUNK_BYTES = 1024 * 1024


def quarantine(runtime: Runtime, ref: ObjectRef) -> int:
    """Tag the original (the API and bucket policy refuse tagged objects) and delete every
    derivative already written. Returns how many derivatives were deleted."""
    s3 = runtime.s3
    tagging = {"Bucket": ref.bucket, "Key": ref.key, "Tagging": {"TagSet": quarantine_tags()}}
    if ref.version_id and ref.version_id != "null":
        tagging["VersionId"] = ref.version_id
    s3.put_object_tagging(**tagging)
    prefix = upload_prefix(ref.tenant_id, ref.project_id, ref.upload_id) + "derived/"
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ref.bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
    delete_objects(runtime, keys)
    return len(keys)


def work(runtime: Runtime, ref: ObjectRef, upload: UploadRow) -> StepOutcome:
    settings = runtime.settings
    check_size(ref.size, settings.scan_max_bytes)
    if not settings.clamd_url:
        raise clamd.ClamdUnavailable("BUILDPEER_CLAMD_URL is not set; refusing to call anything clean")
    body = runtime.s3.get_object(**ref.get_kwargs())["Body"]
    try:
        result = scan_stream(
            body.iter_chunks(CHUNK_BYTES),
            clamd_url=settings.clamd_url,
            max_bytes=settings.scan_max_bytes,
        )
    finally:
        body.close()
    facts = {"engine": "clamav", "scanned_bytes": result.scanned_bytes, "sniffed_type": result.sniffed_type}
    reason = verdict_reason(result.signature or "") if result.infected else None
    if reason is not None and reason != ReasonCode.INFECTED:
        return StepOutcome.failed(
            reason,
            f"clamd could not scan the whole file: {result.signature}",
            **facts,
            alert=result.signature,
        )
    if result.infected:
        deleted = quarantine(runtime, ref)
        return StepOutcome(
            state="failed",
            reason=ReasonCode.INFECTED,
            quarantine=True,
            result={**facts, "signature": result.signature, "derivatives_deleted": deleted},
        )
    problem = type_problem(upload.declared_type, settings.allowed_types, result.sniffed_type)
    if problem is not None:
        return StepOutcome.failed(problem.reason, problem.message, **facts)
    return StepOutcome(state="done", result={**facts, "clean": True}, sniffed_type=result.sniffed_type)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, SCAN, work)
