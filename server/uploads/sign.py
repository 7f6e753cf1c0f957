"""``POST /s3/sign``: the backend of stock ``@uppy/aws-s3`` 6's ``signRequest``
(wire format: shared/wire/uppy-aws-s3-6.md).

The body is Uppy's ``PresignableRequest`` (``method``, ``key``, ``uploadId?``, ``partNumber?``,
``contentType?``, ``expiresIn?``) plus the ``metadata`` the app's sign function adds
(``projectId``, ``name``, ``size?``, ``sha256?``, ``type?``); the answer is Uppy's
``PresignedResponse`` (``url``, ``key?``, ``headers?``, ``fields?``). Uppy then talks to S3
itself for every step, create and complete included:

- PutObject → a POST policy (``url`` + ``fields``) under the rules of ``/s3/params``;
- CreateMultipartUpload → the upload row and its tenant key, and the signed ``?uploads`` URL;
- UploadPart / ListParts / CompleteMultipartUpload / AbortMultipartUpload → only for a key
  and S3 UploadId of one of the caller's uploads in the caller's tenant. The first request
  carrying an UploadId binds it to the row once S3 confirms that upload exists for that key.

A complete signed here moves the upload on when S3's ObjectCreated event reaches the
processors (as for a single upload); signing the abort fails the upload with ``aborted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.auth import Principal
from core.db import tenant_transaction
from core.keys import is_under_tenant
from core.status import ReasonCode, UploadStatus
from core.tracing import to_object_metadata
from core.transition import transition
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate
from server.uploads import store
from server.uploads.access import companion_errors, json_body, require_owner
from server.uploads.context import Uploads, changes, uploads
from server.uploads.creation import create_upload
from server.uploads.parts import MAX_PARTS, part_count
from server.uploads.validation import UploadRequest, parse_upload_request, sha256_base64

SIGNABLE = (UploadStatus.PENDING, UploadStatus.UPLOADING)
MAX_KEY_LENGTH = 1024
MAX_UPLOAD_ID_LENGTH = 1024


def _operation(body: Mapping[str, Any]) -> str:
    method, upload_id, part = body.get("method"), body.get("uploadId"), body.get("partNumber")
    if not isinstance(method, str):
        raise bad_request("`method` must be one of PUT, POST, GET, DELETE", "invalid_method")
    if upload_id is None:
        operations = {"PUT": "put_object", "POST": "create_multipart_upload"}
    else:
        operations = {
            "PUT": "upload_part",
            "GET": "list_parts",
            "POST": "complete_multipart_upload",
            "DELETE": "abort_multipart_upload",
        }
    operation = operations.get(method)
    if operation is None:
        raise bad_request(
            f"cannot sign {method!r} {'with' if upload_id is not None else 'without'} an uploadId",
            "invalid_method",
        )
    if operation == "upload_part":
        if isinstance(part, bool) or not isinstance(part, int) or not 1 <= part <= MAX_PARTS:
            raise ApiError(
                400, "invalid_part_number", f"`partNumber` must be an integer between 1 and {MAX_PARTS}"
            )
    return operation  # a partNumber on any other request is ignored (Uppy sends none)


def _string(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise bad_request(
            f"`{name}` must be a non-empty string of at most {limit} characters", f"invalid_{name}"
        )
    return value


def _new_upload_request(ctx: Uploads, body: Mapping[str, Any]) -> UploadRequest:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise ApiError(400, "invalid_metadata", "`metadata` ({projectId, name, size?, sha256?}) is required")
    name = metadata.get("name")
    content_type = body.get("contentType")
    if content_type is None:
        content_type = metadata.get("type")
    return parse_upload_request(
        filename=name,
        content_type=content_type,
        metadata={k: v for k, v in metadata.items() if k not in ("size", "sha256")},
        size=metadata.get("size"),
        settings=ctx.settings,
        sha256=metadata.get("sha256"),
    )


async def _put_object(
    request: Request, ctx: Uploads, principal: Principal, body: Mapping[str, Any]
) -> Response:
    req = _new_upload_request(ctx, body)
    if req.size is not None and req.size > ctx.settings.single_put_max_bytes:
        raise ApiError(
            400, "use_multipart", f"files over {ctx.settings.single_put_max_bytes} bytes must use multipart"
        )
    new = await create_upload(ctx, changes(request), principal, req, multipart=False, create_s3_upload=False)
    document, key = new.document, new.key
    low, high = (req.size, req.size) if req.size is not None else (1, ctx.settings.single_put_max_bytes)
    signed = ctx.presigner.post_policy(
        key,
        req.content_type,
        min_size=low,
        max_size=high,
        metadata=to_object_metadata(),
        sha256_b64=sha256_base64(req.sha256) if req.sha256 else None,
    )
    return JSONResponse({"url": signed["url"], "fields": signed["fields"], "key": key, "id": document["id"]})


async def _create(request: Request, ctx: Uploads, principal: Principal, body: Mapping[str, Any]) -> Response:
    req = _new_upload_request(ctx, body)
    new = await create_upload(ctx, changes(request), principal, req, multipart=True, create_s3_upload=False)
    document, key = new.document, new.key
    url = ctx.presigner.client.generate_presigned_url(
        "create_multipart_upload",
        Params={"Bucket": ctx.bucket, "Key": key},
        ExpiresIn=ctx.presigner.expires,
        HttpMethod="POST",
    )
    return JSONResponse({"url": url, "key": key, "id": document["id"]})


async def _s3_knows(ctx: Uploads, key: str, s3_upload_id: str) -> bool:
    """Whether S3 has the multipart upload ``s3_upload_id`` *for this key* (listing the key's
    uploads: ListParts alone does not compare the key on every S3 implementation)."""
    listed = await ctx.s3.list_multipart_uploads(Bucket=ctx.bucket, Prefix=key, MaxUploads=1000)
    return any(u.get("Key") == key and u.get("UploadId") == s3_upload_id for u in listed.get("Uploads", []))


def _part_length(row: Mapping[str, Any], number: int) -> int | None:
    size, each = row["size_bytes"], row["part_size"]
    if not size or not each:
        return None
    count = part_count(size, each)
    if number > count:
        raise ApiError(400, "invalid_part_number", f"part {number} is beyond the file's {count} parts")
    return int(min(each, size - (number - 1) * each))


async def _existing(
    request: Request, ctx: Uploads, principal: Principal, body: Mapping[str, Any], operation: str
) -> Response:
    key = _string(body, "key", MAX_KEY_LENGTH)
    s3_upload_id = _string(body, "uploadId", MAX_UPLOAD_ID_LENGTH)
    if not is_under_tenant(key, principal.tenant_id):
        raise not_found("upload")  # another tenant's key: as if it did not exist
    changed = None
    async with tenant_transaction(ctx.pool, principal.tenant_id) as conn:
        row = await store.find_by_key(conn, key, for_update=True)
        if row is None or row["part_size"] is None:  # unknown, or a single upload's key
            raise not_found("upload")
        require_owner(principal, row)
        bound = row["multipart_upload_id"]
        if bound is not None and bound != s3_upload_id:
            raise not_found("upload")
        if operation != "list_parts" and row["status"] not in SIGNABLE:
            raise ApiError(409, "upload_not_in_progress", f"the upload is {row['status']}")
        if bound is None:
            if not await _s3_knows(ctx, key, s3_upload_id):
                raise ApiError(404, "unknown_upload_id", "S3 has no such multipart upload for this key")
            await store.bind_multipart(conn, row["upload_id"], s3_upload_id)
        params: dict[str, Any] = {"Bucket": ctx.bucket, "Key": key, "UploadId": s3_upload_id}
        if operation == "upload_part":
            number = int(body["partNumber"])
            length = _part_length(row, number)
            params["PartNumber"] = number
            if length is not None:
                params["ContentLength"] = length
            changed = await transition(conn, row["upload_id"], UploadStatus.UPLOADING)
            if changed is None:
                await store.touch(conn, row["upload_id"])
        elif operation == "abort_multipart_upload":
            changed = await transition(conn, row["upload_id"], UploadStatus.FAILED, reason=ReasonCode.ABORTED)
        elif operation == "complete_multipart_upload":
            # Write-once: the condition is signed, so S3 refuses the complete without it and
            # never replaces an object that exists (412); Uppy sends `headers` as given.
            params["IfNoneMatch"] = "*"
            await store.touch(conn, row["upload_id"])
    url = ctx.presigner.client.generate_presigned_url(
        operation, Params=params, ExpiresIn=ctx.presigner.expires, HttpMethod=str(body["method"])
    )
    if changed is not None:
        await changes(request).changed(changed)
    if operation == "complete_multipart_upload":
        return JSONResponse({"url": url, "headers": {"If-None-Match": "*"}})
    return JSONResponse({"url": url})


@companion_errors
async def sign_request(request: Request) -> Response:
    principal = await authenticate(request)  # before anything in the body is looked at
    ctx = uploads(request)
    body = await json_body(request)
    operation = _operation(body)
    expires_in = body.get("expiresIn")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 1
    ):
        raise bad_request("`expiresIn` must be a positive integer (seconds)", "invalid_expires_in")
    if operation == "put_object":
        return await _put_object(request, ctx, principal, body)
    if operation == "create_multipart_upload":
        return await _create(request, ctx, principal, body)
    return await _existing(request, ctx, principal, body, operation)
