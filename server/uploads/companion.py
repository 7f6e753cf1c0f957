"""Uppy-Companion-compatible S3 routes (DESIGN §3; wire format: shared/wire/uppy-aws-s3-5.md).

The API signs; the bytes go from the client straight to S3. The upload row is always
found by S3 uploadId *and* key inside the caller's tenant, so another tenant's ids are 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.auth import Principal
from core.db import tenant_transaction
from core.keys import is_under_tenant, original_key
from core.status import ReasonCode, UploadStatus, can_transition
from core.tracing import to_object_metadata
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate, require_project_access
from server.uploads import s3ops, store
from server.uploads.access import companion_errors, json_body, require_owner
from server.uploads.context import Uploads, publisher, uploads
from server.uploads.lifecycle import (
    count_status_change,
    failed_event,
    publish_progress,
    write_through,
)
from server.uploads.parts import MAX_PARTS, parse_part_number, parse_part_numbers, part_count, part_size
from server.uploads.validation import UploadRequest, bracket_metadata, parse_upload_request

SIGNABLE = (UploadStatus.PENDING, UploadStatus.UPLOADING)


def _required_key(request: Request) -> str:
    key = request.query_params.get("key")
    if not key:
        raise bad_request(
            'the object key must be passed as a query parameter, e.g. "?key=..."', "missing_key"
        )
    return key


async def _create_row(
    ctx: Uploads,
    principal: Principal,
    req: UploadRequest,
    *,
    multipart: bool,
) -> tuple[dict[str, Any], str, str | None, int | None]:
    """Authorise, (for multipart) create the S3 upload, write the ``pending`` row."""
    upload_id = uuid.uuid4()
    key = original_key(principal.tenant_id, req.project_id, upload_id, req.safe_name)
    if not is_under_tenant(key, principal.tenant_id):  # defence in depth; safe_name makes this hold
        raise bad_request("invalid file name", "invalid_file_name")
    size_of_part = part_size(req.size or 0) if multipart else None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        await require_project_access(conn, principal, req.project_id, write=True)
        s3_upload_id: str | None = None
        if multipart:
            created = await ctx.s3.create_multipart_upload(
                Bucket=ctx.bucket, Key=key, ContentType=req.content_type, Metadata=to_object_metadata()
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
                multipart_upload_id=s3_upload_id,
                part_size=size_of_part,
                metadata=req.metadata,
            )
        except BaseException:
            if s3_upload_id is not None:
                await s3ops.abort(ctx.s3, ctx.bucket, key, s3_upload_id)
            raise
    document = await write_through(ctx.cache, row)
    return document, key, s3_upload_id, size_of_part


@companion_errors
async def get_params(request: Request) -> Response:
    """``GET /s3/params``: a presigned single PUT whose signature covers Content-Type."""
    principal = await authenticate(request)
    ctx = uploads(request)
    query = request.query_params
    req = parse_upload_request(
        filename=query.get("filename"),
        content_type=query.get("type"),
        metadata=bracket_metadata(query),
        size=query.get("size"),
        settings=ctx.settings,
    )
    if req.size is not None and req.size > ctx.settings.single_put_max_bytes:
        raise ApiError(
            400,
            "use_multipart",
            f"files over {ctx.settings.single_put_max_bytes} bytes must use the multipart routes",
        )
    document, key, _, _ = await _create_row(ctx, principal, req, multipart=False)
    trace_metadata = to_object_metadata()  # signed x-amz-meta-* headers: the trace reaches S3
    url = ctx.presigner.put_object(key, req.content_type, trace_metadata)
    return JSONResponse(
        {
            "method": "PUT",
            "url": url,
            "fields": {"key": key},
            "headers": {
                "content-type": req.content_type,
                **{f"x-amz-meta-{name}": value for name, value in trace_metadata.items()},
            },
            "expires": ctx.settings.presign_expiry_seconds,
            "id": document["id"],
        }
    )


@companion_errors
async def create_multipart(request: Request) -> Response:
    """``POST /s3/multipart`` ``{filename, type, metadata{projectId}, size?}`` → ``{key, uploadId}``."""
    principal = await authenticate(request)
    ctx = uploads(request)
    body = await json_body(request)
    req = parse_upload_request(
        filename=body.get("filename"),
        content_type=body.get("type"),
        metadata=body.get("metadata"),
        size=body.get("size"),
        settings=ctx.settings,
    )
    document, key, s3_upload_id, size_of_part = await _create_row(ctx, principal, req, multipart=True)
    return JSONResponse(
        {
            "key": key,
            "uploadId": s3_upload_id,
            "bucket": ctx.bucket,
            "id": document["id"],
            "partSize": size_of_part,
        }
    )


async def _owned_upload(
    ctx: Uploads, principal: Principal, conn: Any, request: Request, *, for_update: bool = True
) -> Any:
    row = await store.find_multipart(
        conn, request.path_params["uploadId"], _required_key(request), for_update=for_update
    )
    if row is None:
        raise not_found("upload")
    require_owner(principal, row)
    return row


def _check_parts_in_range(row: Mapping[str, Any], numbers: list[int]) -> None:
    size, each = row["size_bytes"], row["part_size"]
    limit = part_count(size, each) if size and each else MAX_PARTS
    over = [n for n in numbers if n > limit]
    if over:
        raise ApiError(400, "invalid_part_number", f"part {over[0]} is beyond the file's {limit} parts")


async def _sign(request: Request, numbers: list[int]) -> tuple[Uploads, Any, dict[str, str]]:
    principal = await authenticate(request)
    ctx = uploads(request)
    changed = None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await _owned_upload(ctx, principal, conn, request)
        if row["status"] not in SIGNABLE:
            raise ApiError(409, "upload_not_in_progress", f"the upload is {row['status']}")
        _check_parts_in_range(row, numbers)
        if can_transition(row["status"], UploadStatus.UPLOADING):
            row = changed = await store.update_upload(conn, row["upload_id"], status=UploadStatus.UPLOADING)
        else:
            await store.touch(conn, row["upload_id"])
    urls = ctx.presigner.upload_parts(row["s3_key"], row["multipart_upload_id"], numbers)
    if changed is not None:
        count_status_change(UploadStatus.UPLOADING, None)
        await write_through(ctx.cache, changed)
    await publish_progress(ctx.throttle, publisher(request), row, signed_parts=numbers)
    return ctx, row, urls


@companion_errors
async def sign_part(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/{partNumber}?key=`` → ``{url, expires}``; re-signing is fine."""
    number = parse_part_number(request.path_params["partNumber"])
    ctx, _, urls = await _sign(request, [number])
    return JSONResponse({"url": urls[str(number)], "expires": ctx.settings.presign_expiry_seconds})


@companion_errors
async def sign_batch(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2`` → ``{presignedUrls: {"1": url}}``."""
    numbers = parse_part_numbers(request.query_params.get("partNumbers"))
    _, _, urls = await _sign(request, numbers)
    return JSONResponse({"presignedUrls": urls})


@companion_errors
async def list_parts(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}?key=`` → ``[{PartNumber, Size, ETag}]``, all pages."""
    principal = await authenticate(request)
    ctx = uploads(request)
    changed = None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await _owned_upload(ctx, principal, conn, request)
        parts = await s3ops.list_all_parts(ctx.s3, ctx.bucket, row["s3_key"], row["multipart_upload_id"])
        done, total = len(parts), sum(int(p["Size"]) for p in parts)
        if row["status"] in SIGNABLE and (done > row["parts_done"] or total > row["bytes_done"]):
            status = UploadStatus.UPLOADING if parts else None
            row = changed = await store.update_upload(
                conn,
                row["upload_id"],
                status=status if status != row["status"] else None,
                parts_done=done,
                bytes_done=total,
            )
    if changed is not None:
        await write_through(ctx.cache, changed)
        await publish_progress(ctx.throttle, publisher(request), changed)
    return JSONResponse(parts)


def _submitted_parts(body: Mapping[str, Any]) -> list[tuple[int, str]]:
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise bad_request("`parts` must be a non-empty array of {PartNumber, ETag} objects", "invalid_parts")
    result: list[tuple[int, str]] = []
    for part in parts:
        if (
            not isinstance(part, dict)
            or isinstance(part.get("PartNumber"), bool)
            or not isinstance(part.get("PartNumber"), int)
            or not isinstance(part.get("ETag"), str)
        ):
            raise bad_request("`parts` must be an array of {PartNumber, ETag} objects", "invalid_parts")
        result.append((parse_part_number(part["PartNumber"]), part["ETag"]))
    numbers = [n for n, _ in result]
    if numbers != sorted(set(numbers)):
        raise bad_request("parts must be in ascending PartNumber order without repeats", "invalid_parts")
    return result


def _location(ctx: Uploads, key: str, completed: Mapping[str, Any]) -> str:
    location = completed.get("Location")
    return str(location) if location else f"s3://{ctx.bucket}/{key}"


@companion_errors
async def complete(request: Request) -> Response:
    """``POST /s3/multipart/{uploadId}/complete?key=`` ``{parts:[{PartNumber, ETag}]}`` → ``{location}``.

    Every part must be stored in S3 with that ETag; the total must fit the size limits.
    Completing twice answers the same (a retry after a dropped response)."""
    principal = await authenticate(request)
    ctx = uploads(request)
    body = await json_body(request)
    submitted = _submitted_parts(body)
    failed_row = None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await _owned_upload(ctx, principal, conn, request)
        key = row["s3_key"]
        if row["status"] not in SIGNABLE:
            if row["status"] == UploadStatus.FAILED:
                raise ApiError(409, "upload_not_in_progress", f"the upload failed ({row['reason_code']})")
            return JSONResponse({"location": f"s3://{ctx.bucket}/{key}", "key": key, "bucket": ctx.bucket})
        stored = {
            p["PartNumber"]: p
            for p in await s3ops.list_all_parts(ctx.s3, ctx.bucket, key, row["multipart_upload_id"])
        }
        for number, etag in submitted:
            part = stored.get(number)
            if part is None:
                raise ApiError(400, "part_missing", f"part {number} was not uploaded")
            if s3ops.normalize_etag(part["ETag"]) != s3ops.normalize_etag(etag):
                raise ApiError(400, "etag_mismatch", f"part {number}: ETag does not match the stored part")
        total = sum(int(stored[n]["Size"]) for n, _ in submitted)
        declared = row["size_bytes"]
        too_large = total > ctx.settings.max_upload_bytes
        if too_large or (declared and total != declared):
            if too_large:
                await s3ops.abort(ctx.s3, ctx.bucket, key, row["multipart_upload_id"])
                failed_row = await store.update_upload(
                    conn, row["upload_id"], status=UploadStatus.FAILED, reason=ReasonCode.TOO_LARGE
                )
            else:
                raise ApiError(
                    400, "size_mismatch", f"the parts add up to {total} bytes, {declared} were declared"
                )
        else:
            completed = await ctx.s3.complete_multipart_upload(
                Bucket=ctx.bucket,
                Key=key,
                UploadId=row["multipart_upload_id"],
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": stored[n]["ETag"]} for n, _ in submitted]
                },
            )
            patch = {"client_sha256": body["sha256"]} if isinstance(body.get("sha256"), str) else None
            row = await store.update_upload(
                conn,
                row["upload_id"],
                status=UploadStatus.UPLOADED,
                parts_done=len(submitted),
                bytes_done=total,
                size=total,
                metadata_patch=patch,
            )
    if failed_row is not None:
        count_status_change(UploadStatus.FAILED, ReasonCode.TOO_LARGE)
        await write_through(ctx.cache, failed_row)
        await publisher(request).publish(failed_event(failed_row))
        raise ApiError(
            413, "too_large", f"files larger than {ctx.settings.max_upload_bytes} bytes are not accepted"
        )
    count_status_change(UploadStatus.UPLOADED, None)
    await write_through(ctx.cache, row)
    await publish_progress(ctx.throttle, publisher(request), row)
    return JSONResponse({"location": _location(ctx, key, completed), "key": key, "bucket": ctx.bucket})


@companion_errors
async def abort(request: Request) -> Response:
    """``DELETE /s3/multipart/{uploadId}?key=`` → ``{}``; the upload becomes failed/aborted."""
    principal = await authenticate(request)
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await _owned_upload(ctx, principal, conn, request)
        if row["status"] not in SIGNABLE and row["status"] != UploadStatus.FAILED:
            raise ApiError(409, "upload_completed", f"the upload is already {row['status']}")
        await s3ops.abort(ctx.s3, ctx.bucket, row["s3_key"], row["multipart_upload_id"])
        changed = None
        if can_transition(row["status"], UploadStatus.FAILED):
            changed = await store.update_upload(
                conn, row["upload_id"], status=UploadStatus.FAILED, reason=ReasonCode.ABORTED
            )
    if changed is not None:
        count_status_change(UploadStatus.FAILED, ReasonCode.ABORTED)
        await write_through(ctx.cache, changed)
        await publisher(request).publish(failed_event(changed))
    return JSONResponse({})
