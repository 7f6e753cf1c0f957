"""Uppy-Companion-compatible S3 routes (DESIGN §3; wire format: shared/wire/uppy-aws-s3-5.md).

The API signs; the bytes go from the client straight to S3. The upload row is always
found by S3 uploadId *and* key inside the caller's tenant, so another tenant's ids are 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.auth import Principal
from core.db import tenant_transaction
from core.status import ReasonCode, UploadStatus
from core.tracing import to_object_metadata
from core.transition import Progress, transition
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate
from server.uploads import s3ops, store
from server.uploads.access import companion_errors, json_body, require_owner
from server.uploads.context import Uploads, changes, uploads
from server.uploads.creation import create_upload
from server.uploads.parts import MAX_PARTS, parse_part_number, parse_part_numbers, part_count
from server.uploads.presign import SignedPart
from server.uploads.validation import (
    bracket_metadata,
    parse_sha256,
    parse_upload_request,
    sha256_base64,
)

SIGNABLE = (UploadStatus.PENDING, UploadStatus.UPLOADING)


def _required_key(request: Request) -> str:
    key = request.query_params.get("key")
    if not key:
        raise bad_request(
            'the object key must be passed as a query parameter, e.g. "?key=..."', "missing_key"
        )
    return key


@companion_errors
async def get_params(request: Request) -> Response:
    """``GET /s3/params``: an S3 POST policy ``{method: "POST", url, fields}`` binding the key,
    the type, the size (exactly the declared one, else 1 byte..``single_put_max_bytes``) and
    the declared ``sha256`` if any."""
    principal = await authenticate(request)
    ctx = uploads(request)
    query = request.query_params
    req = parse_upload_request(
        filename=query.get("filename"),
        content_type=query.get("type"),
        metadata=bracket_metadata(query),
        size=query.get("size"),
        settings=ctx.settings,
        sha256=query.get("sha256"),
    )
    if req.size is not None and req.size > ctx.settings.single_put_max_bytes:
        raise ApiError(
            400,
            "use_multipart",
            f"files over {ctx.settings.single_put_max_bytes} bytes must use the multipart routes",
        )
    new = await create_upload(ctx, changes(request), principal, req, multipart=False, create_s3_upload=False)
    document, key = new.document, new.key
    low, high = (req.size, req.size) if req.size is not None else (1, ctx.settings.single_put_max_bytes)
    signed = ctx.presigner.post_policy(
        key,
        req.content_type,
        min_size=low,
        max_size=high,
        metadata=to_object_metadata(),  # x-amz-meta-* fields in the policy: the trace reaches S3
        sha256_b64=sha256_base64(req.sha256) if req.sha256 else None,
    )
    return JSONResponse(
        {
            "method": "POST",
            "url": signed["url"],
            "fields": signed["fields"],
            "expires": ctx.settings.presign_expiry_seconds,
            "id": document["id"],
        }
    )


@companion_errors
async def create_multipart(request: Request) -> Response:
    """``POST /s3/multipart`` ``{filename, type, metadata{projectId}, size?, sha256?}`` →
    ``{key, uploadId}``. With ``sha256`` the S3 upload is created with ChecksumAlgorithm=SHA256
    and every part must then be signed with its own ``?sha256=``."""
    principal = await authenticate(request)
    ctx = uploads(request)
    body = await json_body(request)
    req = parse_upload_request(
        filename=body.get("filename"),
        content_type=body.get("type"),
        metadata=body.get("metadata"),
        size=body.get("size"),
        settings=ctx.settings,
        sha256=body.get("sha256"),
    )
    new = await create_upload(ctx, changes(request), principal, req, multipart=True, create_s3_upload=True)
    return JSONResponse(
        {
            "key": new.key,
            "uploadId": new.s3_upload_id,
            "bucket": ctx.bucket,
            "id": new.document["id"],
            "partSize": new.part_size,
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


def _part_length(row: Mapping[str, Any], number: int) -> int | None:
    """The declared size of part ``number`` (the remainder for the last), None if no size was
    declared. ``number`` is within the file's parts (:func:`_check_parts_in_range`)."""
    size, each = row["size_bytes"], row["part_size"]
    if not size or not each:
        return None
    return int(min(each, size - (number - 1) * each))


def _part_checksum(row: Mapping[str, Any], raw: str | None, *, batch: bool) -> str | None:
    """The part's SHA-256 (base64) to sign: required when the file's sha256 was declared
    (the S3 upload checks every part), refused otherwise."""
    declared = row["declared_sha256"] is not None
    if raw is None or raw == "":
        if declared:
            how = "sign each part with GET /s3/multipart/{uploadId}/{n}?sha256=" if batch else "pass ?sha256="
            raise ApiError(
                400, "checksum_required", f"this upload declared a sha256: every part needs its own ({how})"
            )
        return None
    if batch:
        raise ApiError(400, "checksum_required", "part checksums are signed one part at a time")
    if not declared:
        raise ApiError(
            400,
            "checksum_not_declared",
            "part checksums need the file's sha256 declared at create",
        )
    digest = parse_sha256(raw, "the part's sha256")
    assert digest is not None
    return sha256_base64(digest)


async def _sign(
    request: Request, numbers: list[int], *, batch: bool = False
) -> tuple[Uploads, Any, dict[str, SignedPart]]:
    principal = await authenticate(request)
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await _owned_upload(ctx, principal, conn, request)
        if row["status"] not in SIGNABLE:
            raise ApiError(409, "upload_not_in_progress", f"the upload is {row['status']}")
        _check_parts_in_range(row, numbers)
        checksum = _part_checksum(row, request.query_params.get("sha256"), batch=batch)
        changed = await transition(conn, row["upload_id"], UploadStatus.UPLOADING)
        if changed is None:
            await store.touch(conn, row["upload_id"])
        else:
            row = changed
    urls = {
        str(n): ctx.presigner.upload_part(
            row["s3_key"],
            row["multipart_upload_id"],
            n,
            content_length=_part_length(row, n),
            sha256_b64=checksum,
        )
        for n in numbers
    }
    after = changes(request)
    if changed is not None:
        await after.changed(changed, signed_parts=numbers)
    else:
        await after.progressed(row, signed_parts=numbers)
    return ctx, row, urls


@companion_errors
async def sign_part(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/{partNumber}?key=&sha256=`` → ``{url, expires, headers?}``;
    re-signing is fine. With a declared size the part's Content-Length is signed; ``headers``
    (the signed ``x-amz-checksum-sha256``) must be sent with the PUT."""
    await authenticate(request)  # before the path is validated
    number = parse_part_number(request.path_params["partNumber"])
    ctx, _, urls = await _sign(request, [number])
    signed = urls[str(number)]
    answer: dict[str, Any] = {"url": signed.url, "expires": ctx.settings.presign_expiry_seconds}
    if signed.headers:
        answer["headers"] = signed.headers
    return JSONResponse(answer)


@companion_errors
async def sign_batch(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2`` → ``{presignedUrls: {"1": url}}``."""
    await authenticate(request)  # before the query is validated
    numbers = parse_part_numbers(request.query_params.get("partNumbers"))
    _, _, urls = await _sign(request, numbers, batch=True)
    return JSONResponse({"presignedUrls": {n: signed.url for n, signed in urls.items()}})


@companion_errors
async def list_parts(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}?key=`` → ``[{PartNumber, Size, ETag}]``, all pages.

    A read: it changes nothing (no status, no counters, no event)."""
    principal = await authenticate(request)
    ctx = uploads(request)
    async with tenant_transaction(ctx.pool, principal.tenant_id, readonly=True) as conn:
        row = await _owned_upload(ctx, principal, conn, request, for_update=False)
    parts = await s3ops.list_all_parts(ctx.s3, ctx.bucket, row["s3_key"], row["multipart_upload_id"])
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
    # S3 wants ascending order: sort here (clients list parts as they finished). The same part
    # twice with one ETag is one part; with two ETags it contradicts itself.
    unique: dict[int, str] = {}
    for number, etag in result:
        if unique.setdefault(number, etag) != etag:
            raise ApiError(409, "conflicting_parts", f"part {number} is listed with two different ETags")
    return sorted(unique.items())


def _submitted_checksums(body: Mapping[str, Any]) -> dict[int, str]:
    """``ChecksumSHA256`` (base64, as S3 answered the part PUT) of the submitted parts that
    carry one: used at complete when S3's ListParts does not return them."""
    found: dict[int, str] = {}
    for part in body.get("parts") or []:
        raw = part.get("ChecksumSHA256") if isinstance(part, dict) else None
        if raw is not None:
            digest = parse_sha256(raw, f"part {part.get('PartNumber')}'s ChecksumSHA256")
            if digest is None:
                raise bad_request("ChecksumSHA256 must be a SHA-256 (base64 or hex)", "invalid_sha256")
            found[int(part["PartNumber"])] = sha256_base64(digest)
    return found


def _completed_part(number: int, stored: Mapping[str, Any], given: dict[int, str]) -> dict[str, Any]:
    part: dict[str, Any] = {"PartNumber": number, "ETag": stored["ETag"]}
    checksum = stored.get("ChecksumSHA256") or given.get(number)
    if checksum:
        part["ChecksumSHA256"] = checksum
    return part


def _location(ctx: Uploads, key: str, completed: Mapping[str, Any]) -> str:
    location = completed.get("Location")
    return str(location) if location else f"s3://{ctx.bucket}/{key}"


@companion_errors
async def complete(request: Request) -> Response:
    """``POST /s3/multipart/{uploadId}/complete?key=`` ``{parts:[{PartNumber, ETag}]}`` → ``{location}``.

    Every part must be stored in S3 with that ETag; the total must fit the size limits and
    equal the declared size, else the S3 upload is aborted at once and the upload fails.
    The complete is conditional (``If-None-Match: *``): it never replaces an existing object.
    Completing twice answers the same (a retry after a dropped response)."""
    principal = await authenticate(request)
    ctx = uploads(request)
    body = await json_body(request)
    submitted = _submitted_parts(body)
    given_checksums = _submitted_checksums(body)
    file_sha256 = parse_sha256(body.get("sha256"))
    failed_row = None
    failure: ApiError | None = None
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
                raise ApiError(409, "part_missing", f"part {number} was not uploaded")
            if s3ops.normalize_etag(part["ETag"]) != s3ops.normalize_etag(etag):
                raise ApiError(409, "etag_mismatch", f"part {number}: ETag does not match the stored part")
        declared_sha256 = row["declared_sha256"]
        if file_sha256 and declared_sha256 and file_sha256 != declared_sha256:
            raise ApiError(409, "checksum_mismatch", "sha256 differs from the one declared at create")
        total = sum(int(stored[n]["Size"]) for n, _ in submitted)
        declared = row["size_bytes"]
        if total > ctx.settings.max_upload_bytes:
            reason = ReasonCode.TOO_LARGE
            failure = ApiError(
                413, "too_large", f"files larger than {ctx.settings.max_upload_bytes} bytes are not accepted"
            )
        elif declared and total != declared:
            reason = ReasonCode.SIZE_MISMATCH
            failure = ApiError(
                409, "size_mismatch", f"the parts add up to {total} bytes, not the {declared} declared"
            )
        if failure is not None:
            # Abort now (not after the bucket's 24-hour lifecycle rule): the parts are discarded.
            await s3ops.abort(ctx.s3, ctx.bucket, key, row["multipart_upload_id"])
            failed_row = await transition(conn, row["upload_id"], UploadStatus.FAILED, reason=reason)
        else:
            try:
                completed = await ctx.s3.complete_multipart_upload(
                    Bucket=ctx.bucket,
                    Key=key,
                    UploadId=row["multipart_upload_id"],
                    IfNoneMatch="*",  # write-once: never replace an object that exists
                    MultipartUpload={
                        "Parts": [_completed_part(n, stored[n], given_checksums) for n, _ in submitted]
                    },
                )
            except ClientError as exc:
                code = s3ops.error_code(exc)
                if code in s3ops.REFUSED_COMPLETE:  # the client's parts: it may fix them and retry
                    message = exc.response.get("Error", {}).get("Message") or code
                    raise ApiError(
                        400, "complete_refused", f"S3 refused the complete: {code}: {message}"
                    ) from None
                if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
                await s3ops.abort(ctx.s3, ctx.bucket, key, row["multipart_upload_id"])
                raise ApiError(409, "object_exists", "an object already exists under this key") from None
            if file_sha256 and not declared_sha256:  # declared only now (the processors compare)
                await store.declare_sha256(conn, row["upload_id"], file_sha256)
            # The row is locked (FOR UPDATE) and in SIGNABLE: the move cannot be refused.
            uploaded = await transition(
                conn,
                row["upload_id"],
                UploadStatus.UPLOADED,
                progress=Progress(parts_done=len(submitted), bytes_done=total, size=total),
            )
            assert uploaded is not None
            row = uploaded
    if failure is not None:
        if failed_row is not None:
            await changes(request).changed(failed_row)
        raise failure
    await changes(request).changed(row)  # never throttled: a progress report just before must not swallow it
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
        changed = await transition(conn, row["upload_id"], UploadStatus.FAILED, reason=ReasonCode.ABORTED)
    if changed is not None:
        await changes(request).changed(changed)
    return JSONResponse({})
