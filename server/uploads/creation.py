"""The one place an upload row is created: authorise the caller on the project, derive the
tenant-scoped key, (optionally) create the S3 multipart upload, write the ``pending`` row.

Both wire formats use it: Companion's routes (which create the S3 multipart upload here) and
Uppy 6's ``/s3/sign`` (whose client creates it with a signed URL, bound on its first request).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from core.auth import Principal
from core.db import tenant_transaction
from core.keys import is_under_tenant, original_key
from core.tracing import to_object_metadata
from server.errors import bad_request
from server.permissions import require_project_access
from server.uploads import s3ops, store
from server.uploads.changes import UploadChanges
from server.uploads.context import Uploads
from server.uploads.parts import part_size
from server.uploads.validation import UploadRequest


@dataclass(frozen=True, slots=True)
class NewUpload:
    document: dict[str, Any]
    key: str
    s3_upload_id: str | None
    part_size: int | None


async def create_upload(
    ctx: Uploads,
    after: UploadChanges,
    principal: Principal,
    req: UploadRequest,
    *,
    multipart: bool,
    create_s3_upload: bool,
) -> NewUpload:
    """Write the ``pending`` row of a new upload; with ``create_s3_upload`` (multipart only)
    the S3 multipart upload is created first and aborted again if the row cannot be written."""
    upload_id = uuid.uuid4()
    key = original_key(principal.tenant_id, req.project_id, upload_id, req.safe_name)
    if not is_under_tenant(key, principal.tenant_id):  # defence in depth; safe_name makes this hold
        raise bad_request("invalid file name", "invalid_file_name")
    size_of_part = part_size(req.size or 0) if multipart else None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        await require_project_access(conn, principal, req.project_id, write=True)
        s3_upload_id: str | None = None
        if multipart and create_s3_upload:
            # With a declared sha256 every part is signed with its own (S3 refuses other bytes).
            checksum = {"ChecksumAlgorithm": "SHA256"} if req.sha256 else {}
            created = await ctx.s3.create_multipart_upload(
                Bucket=ctx.bucket,
                Key=key,
                ContentType=req.content_type,
                Metadata=to_object_metadata(),
                **checksum,
            )
            s3_upload_id = str(created["UploadId"])
        try:
            row = await store.insert_upload(
                conn,
                upload_id=upload_id,
                tenant_id=principal.tenant_id,
                project_id=req.project_id,
                uploader_id=principal.user_id,
                file_name=req.file_name,
                declared_type=req.content_type,
                size=req.size or 0,
                key=key,
                # Without it here, bound on the first request that carries S3's UploadId.
                multipart_upload_id=s3_upload_id,
                part_size=size_of_part,
                metadata=req.metadata,
                declared_sha256=req.sha256,
            )
        except BaseException:
            if s3_upload_id is not None:
                await s3ops.abort(ctx.s3, ctx.bucket, key, s3_upload_id)
            raise
    document = await after.stored(row)  # created `pending`: not a status change
    return NewUpload(document, key, s3_upload_id, size_of_part)
