"""Lambda: image thumbnails (200x200 centre crop, 800 fit-inside), GPS and capture time."""

from __future__ import annotations

import tempfile
from typing import Any

from core.keys import derived_key
from processors.common.outcome import DerivativeFile, StepOutcome
from processors.common.pipeline import handle_batch
from processors.common.reducer import IMAGE
from processors.common.runtime import Runtime
from processors.common.s3event import ObjectRef
from processors.common.sniff import SNIFF_BYTES, require_declared
from processors.common.store import UploadRow
from processors.image.logic import make_thumbnails

SPOOL_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


def work(runtime: Runtime, ref: ObjectRef, upload: UploadRow) -> StepOutcome:
    body = runtime.s3.get_object(**ref.get_kwargs())["Body"]
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                spool.write(chunk)
        finally:
            body.close()
        spool.seek(0)
        require_declared(upload.declared_type, spool.read(SNIFF_BYTES))
        spool.seek(0)
        result = make_thumbnails(spool, max_pixels=runtime.settings.image_max_pixels)
    derivatives = []
    for thumb in result.thumbnails:
        key = derived_key(ref.tenant_id, ref.project_id, ref.upload_id, thumb.name)
        runtime.s3.put_object(
            Bucket=ref.bucket,
            Key=key,
            Body=thumb.data,
            ContentType="image/jpeg",
            CacheControl="private, max-age=86400",
        )
        derivatives.append(
            DerivativeFile(
                kind=thumb.name.removesuffix(".jpg"),
                s3_key=key,
                mime_type="image/jpeg",
                size_bytes=len(thumb.data),
                width=thumb.width,
                height=thumb.height,
            )
        )
    facts: dict[str, Any] = {"width": result.width, "height": result.height, "format": result.format}
    if result.gps is not None:
        facts["gps"] = {"latitude": result.gps[0], "longitude": result.gps[1]}
    if result.captured_at is not None:
        facts["captured_at"] = result.captured_at
    return StepOutcome(state="done", result=facts, derivatives=tuple(derivatives), metadata=facts)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, IMAGE, work)
