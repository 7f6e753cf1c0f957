"""OpenAPI documentation of the upload routes (see :mod:`server.openapi`)."""

from __future__ import annotations

from typing import Any

from core.status import UploadStatus
from server import openapi as oa
from server.openapi import BEARER, errors, json_body, json_response, path_param, query_param
from server.uploads import companion, native, originals, sign, status

UUID = {"type": "string", "format": "uuid"}
SHA256 = {
    "type": "string",
    "pattern": "^([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)$",
    "description": "SHA-256: 64 hex digits, or S3's base64 of the 32 bytes",
}
# Values that depend on the configuration are filled in by server.openapi from the app's settings.
MIME = {
    "type": "string",
    "x-enum-setting": "allowed_types",
    "description": "MIME type, one of BUILDPEER_ALLOWED_TYPES",
}
FILE_SIZE = {"type": "integer", "minimum": 0, "x-maximum-setting": "max_upload_bytes"}
SINGLE_SIZE = {"type": "integer", "minimum": 0, "x-maximum-setting": "single_put_max_bytes"}
# A plain file name: no path, no control or invisible formatting characters, not "." or "..".
_CF = (
    r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
FILE_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1024,
    # at least one character that is neither space nor "." (so never "." or ".."), no lookarounds
    "pattern": r"^[^/\\\x00-\x1f" + _CF + r"]*[^/\\\s.\x00-\x1f" + _CF + r"][^/\\\x00-\x1f" + _CF + "]*$",
}
# Metadata values: text up to 1,024 characters or numbers (kept as text); keys outside 1-64
# characters are dropped.
# Text with a NUL cannot be stored: any route answers it 400 `invalid_text`.
STORABLE_TEXT = r"^[^\x00]*$"
METADATA_VALUE = {
    "anyOf": [{"type": "string", "maxLength": 1024, "pattern": STORABLE_TEXT}, {"type": "number"}]
}
METADATA = {
    "type": "object",
    "required": ["projectId"],
    "properties": {"projectId": UUID, "size": FILE_SIZE},
    "additionalProperties": METADATA_VALUE,
    "propertyNames": {"pattern": STORABLE_TEXT},
    "maxProperties": 32,
}
SCHEMAS: dict[str, Any] = {
    "UploadDocument": {
        "type": "object",
        "required": ["id", "project_id", "status", "version"],
        "properties": {
            "id": UUID,
            "project_id": UUID,
            "uploader_id": UUID,
            "file_name": {"type": "string"},
            "declared_type": {"type": "string"},
            "sniffed_type": {"type": "string", "nullable": True},
            "size": {"type": "integer"},
            "status": {
                "type": "string",
                "enum": [s.value for s in UploadStatus],  # the machine's statuses, deleted included
            },
            "reason": {"type": "string", "nullable": True},
            "parts_done": {"type": "integer"},
            "bytes_done": {"type": "integer"},
            "sha256": {
                "type": "string",
                "nullable": True,
                "description": "The processors' SHA-256 of the stored bytes (hex)",
            },
            "declared_sha256": {
                "type": "string",
                "nullable": True,
                "description": "The SHA-256 the client declared (hex); signed into the upload",
            },
            "sha256_verified": {
                "type": "boolean",
                "nullable": True,
                "description": "null: nothing declared or not checked yet; true: sha256 = declared_sha256; "
                "false: they differ (the upload failed with checksum_mismatch)",
            },
            "metadata": {"type": "object"},
            "version": {"type": "integer"},
            "derivatives": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "CreateMultipart": {
        "type": "object",
        "required": ["filename", "type", "metadata"],
        "properties": {
            "filename": FILE_NAME,
            "type": MIME,
            "metadata": METADATA,
            "size": {
                **FILE_SIZE,
                "description": "File size in bytes (optional); when given, each part URL signs its "
                "Content-Length and a complete whose parts add up to another size fails (size_mismatch)",
            },
            "sha256": {
                **SHA256,
                "description": "The file's SHA-256 (optional). The S3 upload is then created with "
                "ChecksumAlgorithm=SHA256 and every part must be signed with its own ?sha256=",
            },
        },
    },
    "CompleteMultipart": {
        "type": "object",
        "required": ["parts"],
        "properties": {
            "parts": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["PartNumber", "ETag"],
                    "properties": {
                        "PartNumber": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "ETag": {"type": "string"},
                        "ChecksumSHA256": {
                            **SHA256,
                            "description": "The part's SHA-256 (as S3 answered the part PUT)",
                        },
                    },
                },
            },
            "sha256": {
                **SHA256,
                "description": "The file's SHA-256: equal to the one declared at create, or declares it",
            },
        },
    },
    "Progress": {
        "type": "object",
        "required": ["bytes_done"],
        "properties": {
            "bytes_done": FILE_SIZE,
            "parts_done": {"type": "integer", "minimum": 0, "maximum": 10000},
        },
    },
    "Part": {
        "type": "object",
        "required": ["PartNumber", "Size", "ETag"],
        "properties": {
            "PartNumber": {"type": "integer"},
            "Size": {"type": "integer"},
            "ETag": {"type": "string"},
            "ChecksumSHA256": {"type": "string", "description": "When S3 lists the part's checksum"},
        },
    },
}

# OpenAPI links: what a create answers feeds the routes acting on that upload (stateful tests).
_S3_UPLOAD = {"uploadId": "$response.body#/uploadId", "key": "$response.body#/key"}
MULTIPART_LINKS = {
    "ListParts": {"operationId": "s3ListParts", "parameters": _S3_UPLOAD},
    "SignPart": {"operationId": "s3SignPart", "parameters": {**_S3_UPLOAD, "partNumber": 1}},
    "SignBatch": {"operationId": "s3SignBatch", "parameters": {**_S3_UPLOAD, "partNumbers": "1"}},
    "Complete": {"operationId": "s3Complete", "parameters": _S3_UPLOAD},
    "Abort": {"operationId": "s3Abort", "parameters": _S3_UPLOAD},
}
_UPLOAD = {"upload_id": "$response.body#/id"}
UPLOAD_LINKS = {
    "GetUpload": {"operationId": "getUpload", "parameters": _UPLOAD},
    "ReportProgress": {"operationId": "reportProgress", "parameters": _UPLOAD},
    "DownloadOriginal": {"operationId": "downloadOriginal", "parameters": _UPLOAD},
    "DeleteUpload": {"operationId": "deleteUpload", "parameters": _UPLOAD},
}
_PART = "(10000|[1-9][0-9]{0,3})"
PART_NUMBERS = f"^{_PART}(,{_PART})*$"  # 1..10000 (at most 1,000 distinct per batch)
UPLOAD_ID = path_param("uploadId", {"type": "string", "minLength": 1}, "S3 multipart uploadId")
KEY = query_param("key", {"type": "string", "minLength": 1}, required=True, description="S3 object key")
TAGS = ["uploads"]


def document() -> None:
    oa.describe(
        companion.get_params,
        "get",
        {
            "tags": TAGS,
            "summary": "S3 POST policy for a single upload (Companion /s3/params)",
            "description": "The answer is an S3 POST policy: POST `fields` plus the file (a multipart form) "
            "to `url`. The policy binds the key, the Content-Type, the size (`content-length-range`: exactly "
            "`size` when given, else 1 byte to BUILDPEER_SINGLE_PUT_MAX_BYTES) and, with `sha256`, the "
            "checksum (S3 refuses other bytes). S3's POST Object has no conditional-write field, so a "
            "replayed policy can write a newer version until it expires; the processors never process or "
            "serve anything but the version they scanned.",
            "operationId": "s3Params",
            "security": BEARER,
            "parameters": [
                query_param("filename", FILE_NAME, required=True),
                query_param("type", MIME, required=True, description="MIME type"),
                query_param("size", SINGLE_SIZE),
                query_param("sha256", SHA256, description="The file's SHA-256, signed into the policy"),
                {
                    "name": "metadata",
                    "in": "query",
                    "required": True,
                    "style": "deepObject",
                    "explode": True,
                    "schema": {**METADATA, "properties": {"projectId": UUID, "size": SINGLE_SIZE}},
                },
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["method", "url", "fields"],
                        "properties": {
                            "method": {"type": "string", "enum": ["POST"]},
                            "url": {"type": "string", "description": "The bucket's URL"},
                            "fields": {
                                "type": "object",
                                "required": ["key", "policy", "Content-Type"],
                                "additionalProperties": {"type": "string"},
                                "description": "Form fields to send before the file: key, Content-Type, "
                                "x-amz-meta-*, x-amz-checksum-*, policy and its SigV4 signature",
                            },
                            "expires": {"type": "integer"},
                            "id": UUID,
                        },
                    }
                )
                | {"links": UPLOAD_LINKS},
                **errors(400, 401, 403, 404, 413, 415, 429),
            },
        },
        SCHEMAS,
    )
    oa.describe(
        companion.create_multipart,
        "post",
        {
            "tags": TAGS,
            "summary": "Create a multipart upload (Companion)",
            "operationId": "s3CreateMultipart",
            "security": BEARER,
            "requestBody": json_body("CreateMultipart"),
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["key", "uploadId"],
                        "properties": {
                            "key": {"type": "string"},
                            "uploadId": {"type": "string"},
                            "bucket": {"type": "string"},
                            "id": UUID,
                            "partSize": {"type": "integer", "nullable": True},
                        },
                    }
                )
                | {"links": {**MULTIPART_LINKS, **UPLOAD_LINKS}},
                **errors(400, 401, 403, 404, 413, 415, 429),
            },
        },
    )
    owned_errors = errors(400, 401, 403, 404, 409, 429)
    oa.describe(
        companion.list_parts,
        "get",
        {
            "tags": TAGS,
            "summary": "List stored parts, every page (Companion)",
            "operationId": "s3ListParts",
            "security": BEARER,
            "parameters": [UPLOAD_ID, KEY],
            "responses": {"200": json_response({"type": "array", "items": oa.ref("Part")}), **owned_errors},
        },
    )
    oa.describe(
        companion.abort,
        "delete",
        {
            "tags": TAGS,
            "summary": "Abort a multipart upload (Companion)",
            "operationId": "s3Abort",
            "security": BEARER,
            "parameters": [UPLOAD_ID, KEY],
            "responses": {"200": json_response({"type": "object"}), **owned_errors},
        },
    )
    oa.describe(
        companion.sign_part,
        "get",
        {
            "tags": TAGS,
            "summary": "Presign one part (Companion)",
            "description": "With a declared size the part's Content-Length is signed (the part size; the "
            "remainder for the last part). With a declared file sha256, `sha256` (the part's) is required "
            "and signed: send the answer's `headers` with the PUT.",
            "operationId": "s3SignPart",
            "security": BEARER,
            "parameters": [
                UPLOAD_ID,
                path_param("partNumber", {"type": "integer", "minimum": 1, "maximum": 10000}),
                KEY,
                query_param(
                    "sha256", SHA256, description="The part's SHA-256 (required when the file's was declared)"
                ),
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["url", "expires"],
                        "properties": {
                            "url": {"type": "string"},
                            "expires": {"type": "integer"},
                            "headers": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                "description": "Signed headers to send with the PUT (x-amz-checksum-sha256)",
                            },
                        },
                    }
                ),
                **owned_errors,
            },
        },
    )
    oa.describe(
        companion.sign_batch,
        "get",
        {
            "tags": TAGS,
            "summary": "Presign a batch of parts (Companion)",
            "operationId": "s3SignBatch",
            "security": BEARER,
            "parameters": [
                UPLOAD_ID,
                KEY,
                query_param("partNumbers", {"type": "string", "pattern": PART_NUMBERS}, required=True),
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["presignedUrls"],
                        "properties": {
                            "presignedUrls": {"type": "object", "additionalProperties": {"type": "string"}}
                        },
                    }
                ),
                **owned_errors,
            },
        },
    )
    oa.describe(
        companion.complete,
        "post",
        {
            "tags": TAGS,
            "summary": "Complete a multipart upload (Companion)",
            "description": "Conditional (If-None-Match: *): never replaces an existing object (409 "
            "object_exists). Parts adding up to another size than declared abort the S3 upload at once "
            "and fail the upload (409 size_mismatch); a part not stored or with another ETag is 409 "
            "(part_missing, etag_mismatch), and so is a sha256 other than the declared one.",
            "operationId": "s3Complete",
            "security": BEARER,
            "parameters": [UPLOAD_ID, KEY],
            "requestBody": json_body("CompleteMultipart"),
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["location"],
                        "properties": {
                            "location": {"type": "string"},
                            "key": {"type": "string"},
                            "bucket": {"type": "string"},
                        },
                    }
                ),
                **errors(400, 401, 403, 404, 409, 413, 429),
            },
        },
    )
    oa.describe(
        status.upload_status,
        "get",
        {
            "tags": TAGS,
            "summary": "Upload status (Redis-cached; ETag / If-None-Match)",
            "operationId": "getUpload",
            "security": BEARER,
            "parameters": [
                path_param("upload_id"),
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": json_response("UploadDocument"),
                "304": {"description": "Not modified"},
                **errors(401, 403, 404, 429),
            },
        },
    )
    oa.describe(
        native.report_progress,
        "post",
        {
            "tags": TAGS,
            "summary": "Report bytes uploaded (moves the upload to `uploading`)",
            "operationId": "reportProgress",
            "security": BEARER,
            "parameters": [path_param("upload_id")],
            "requestBody": json_body("Progress"),
            "responses": {
                "200": json_response("UploadDocument"),
                **errors(400, 401, 403, 404, 409, 413, 429),
            },
        },
    )
    oa.describe(
        native.project_uploads,
        "get",
        {
            "tags": TAGS,
            "summary": "A project's uploads, newest first",
            "operationId": "listProjectUploads",
            "security": BEARER,
            "parameters": [
                path_param("project_id"),
                query_param("limit", {"type": "integer", "minimum": 1, "maximum": native.MAX_LIMIT}),
                query_param("cursor", description="next_cursor of the previous page"),
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["items", "next_cursor"],
                        "properties": {
                            "items": {"type": "array", "items": oa.ref("UploadDocument")},
                            "next_cursor": {"type": "string", "nullable": True},
                        },
                    }
                ),
                **errors(400, 401, 403, 404, 429),
            },
        },
    )
    oa.describe(
        originals.download_original,
        "get",
        {
            "tags": TAGS,
            "summary": "Short-lived presigned GET of the scanned original",
            "description": "Only for a `ready` upload the caller may read (404 otherwise: another tenant, "
            "a non-member, not ready, deleted). The URL names the S3 version the processors scanned "
            "(`versionId`) and makes S3 answer `Content-Disposition: attachment; filename*=UTF-8''...` "
            "(`inline` with ?inline=1 for PDFs and JPEG/PNG/GIF/WebP images).",
            "operationId": "downloadOriginal",
            "security": BEARER,
            "parameters": [
                path_param("upload_id"),
                query_param("inline", {"type": "string", "enum": ["0", "1", "true", "false"]}),
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["url", "expires_in", "content_disposition"],
                        "properties": {
                            "url": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "file_name": {"type": "string"},
                            "content_type": {"type": "string"},
                            "content_disposition": {"type": "string"},
                            "version_id": {"type": "string", "nullable": True},
                            "sha256": {"type": "string", "nullable": True},
                        },
                    }
                ),
                **errors(401, 404, 429),
            },
        },
    )
    oa.describe(
        originals.delete_upload,
        "delete",
        {
            "tags": TAGS,
            "summary": "Delete an upload: its original (every version) and derivatives",
            "description": "The uploader or an admin (403 for others, 404 for another tenant's or a deleted "
            "upload). The upload moves to the terminal status `deleted`, leaves the listings and digests, "
            "and `upload.deleted` is published.",
            "operationId": "deleteUpload",
            "security": BEARER,
            "parameters": [path_param("upload_id")],
            "responses": {"204": {"description": "Deleted"}, **errors(401, 403, 404, 429)},
        },
    )
    _document_sign()


def _sign_metadata(size: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["projectId", "name"],
        "properties": {
            "projectId": UUID,
            "name": FILE_NAME,
            "size": size,
            "sha256": SHA256,
            "type": MIME,
        },
        "additionalProperties": METADATA_VALUE,
        "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": STORABLE_TEXT},
        "maxProperties": 32,
    }


def _new_upload(method: str, size: dict[str, Any], what: str) -> dict[str, Any]:
    """A PutObject / CreateMultipartUpload request: no uploadId, the file in ``metadata``, its
    type in ``contentType`` or ``metadata.type``."""
    return {
        "type": "object",
        "title": what,
        "required": ["method", "key", "metadata"],
        "properties": {
            "method": {"type": "string", "enum": [method]},
            "key": {"type": "string", "description": "Uppy's own choice; the answer's `key` replaces it"},
            "contentType": MIME,
            "expiresIn": EXPIRES_IN,
            "metadata": _sign_metadata(size),
        },
        "not": {"required": ["uploadId"]},
        "anyOf": [{"required": ["contentType"]}, {"properties": {"metadata": {"required": ["type"]}}}],
    }


EXPIRES_IN = {
    "type": "integer",
    "minimum": 1,
    "description": "Ignored: URLs live BUILDPEER_PRESIGN_EXPIRY_SECONDS",
}
EXISTING = {
    "key": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "The key /s3/sign answered"},
    "uploadId": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "S3's UploadId"},
    "expiresIn": EXPIRES_IN,
}
SIGN_REQUEST = {
    "oneOf": [
        _new_upload("PUT", SINGLE_SIZE, "PutObject"),
        _new_upload("POST", FILE_SIZE, "CreateMultipartUpload"),
        {
            "type": "object",
            "title": "UploadPart",
            "required": ["method", "key", "uploadId", "partNumber"],
            "properties": {
                "method": {"type": "string", "enum": ["PUT"]},
                **EXISTING,
                "partNumber": {"type": "integer", "minimum": 1, "maximum": 10000},
            },
        },
        {
            "type": "object",
            "title": "ListParts, CompleteMultipartUpload, AbortMultipartUpload",
            "required": ["method", "key", "uploadId"],
            "properties": {"method": {"type": "string", "enum": ["GET", "POST", "DELETE"]}, **EXISTING},
        },
    ]
}


def _document_sign() -> None:
    oa.describe(
        sign.sign_request,
        "post",
        {
            "tags": TAGS,
            "summary": "Presign one S3 request for stock @uppy/aws-s3 6 (`signRequest`)",
            "description": "Body: Uppy's PresignableRequest plus the `metadata` the app's sign function "
            "adds. "
            "`PUT` without `uploadId` → an S3 POST policy (`url` + `fields`, the rules of /s3/params); "
            "`POST` without `uploadId` → the upload row, its tenant `key` and the signed `?uploads` URL; "
            "with "
            "`uploadId`: `PUT` + `partNumber` (UploadPart, Content-Length signed when the size was "
            "declared), "
            "`GET` (ListParts), `POST` (CompleteMultipartUpload, signed with `If-None-Match: *` and answered "
            "with `headers` the client must send: S3 never replaces an object that exists (412); the "
            "upload moves on when S3's ObjectCreated event arrives), `DELETE` (AbortMultipartUpload; the "
            "upload fails with `aborted`). A key and UploadId "
            "must be one of the caller's uploads (404 otherwise); the first request carrying an UploadId "
            "binds "
            "it after S3 lists that upload for the key.",
            "operationId": "s3Sign",
            "security": BEARER,
            "requestBody": json_body(SIGN_REQUEST),
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["url"],
                        "properties": {
                            "url": {"type": "string"},
                            "key": {"type": "string"},
                            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                            "headers": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                "description": "Signed headers to send with the S3 request",
                            },
                            "id": UUID,
                        },
                    },
                    "Uppy's PresignedResponse",
                ),
                **errors(400, 401, 403, 404, 409, 413, 415, 429),
            },
        },
    )
