"""OpenAPI documentation of the upload routes (see :mod:`server.openapi`)."""

from __future__ import annotations

from typing import Any

from server import openapi as oa
from server.openapi import BEARER, errors, json_body, json_response, path_param, query_param
from server.uploads import companion, native, status

UUID = {"type": "string", "format": "uuid"}
METADATA = {
    "type": "object",
    "required": ["projectId"],
    "properties": {"projectId": UUID, "size": {"type": "integer", "minimum": 0}},
    "additionalProperties": {"type": "string", "maxLength": 1024},
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
                "enum": [
                    "pending",
                    "uploading",
                    "uploaded",
                    "scanning",
                    "processing",
                    "ready",
                    "failed",
                    "quarantined",
                ],
            },
            "reason": {"type": "string", "nullable": True},
            "parts_done": {"type": "integer"},
            "bytes_done": {"type": "integer"},
            "sha256": {"type": "string", "nullable": True},
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
            "filename": {"type": "string", "minLength": 1, "maxLength": 1024},
            "type": {"type": "string", "description": "MIME type; must be in the allowlist"},
            "metadata": METADATA,
            "size": {"type": "integer", "minimum": 0, "description": "File size in bytes (optional)"},
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
                    },
                },
            },
            "sha256": {"type": "string", "description": "The client's sha256 of the file (kept in metadata)"},
        },
    },
    "Progress": {
        "type": "object",
        "required": ["bytes_done"],
        "properties": {
            "bytes_done": {"type": "integer", "minimum": 0},
            "parts_done": {"type": "integer", "minimum": 0},
        },
    },
    "Part": {
        "type": "object",
        "required": ["PartNumber", "Size", "ETag"],
        "properties": {
            "PartNumber": {"type": "integer"},
            "Size": {"type": "integer"},
            "ETag": {"type": "string"},
        },
    },
}

UPLOAD_ID = path_param("uploadId", {"type": "string", "minLength": 1}, "S3 multipart uploadId")
KEY = query_param("key", {"type": "string", "minLength": 1}, required=True, description="S3 object key")
TAGS = ["uploads"]


def document() -> None:
    oa.describe(
        companion.get_params,
        "get",
        {
            "tags": TAGS,
            "summary": "Presigned single PUT (Companion /s3/params)",
            "operationId": "s3Params",
            "security": BEARER,
            "parameters": [
                query_param("filename", required=True),
                query_param("type", required=True, description="MIME type"),
                query_param("size", {"type": "integer", "minimum": 0}),
                {
                    "name": "metadata",
                    "in": "query",
                    "required": True,
                    "style": "deepObject",
                    "explode": True,
                    "schema": METADATA,
                },
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["method", "url", "fields", "headers"],
                        "properties": {
                            "method": {"type": "string", "enum": ["PUT"]},
                            "url": {"type": "string"},
                            "fields": {"type": "object"},
                            "headers": {"type": "object"},
                            "expires": {"type": "integer"},
                            "id": UUID,
                        },
                    }
                ),
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
                ),
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
            "operationId": "s3SignPart",
            "security": BEARER,
            "parameters": [
                UPLOAD_ID,
                path_param("partNumber", {"type": "integer", "minimum": 1, "maximum": 10000}),
                KEY,
            ],
            "responses": {
                "200": json_response(
                    {
                        "type": "object",
                        "required": ["url", "expires"],
                        "properties": {"url": {"type": "string"}, "expires": {"type": "integer"}},
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
                query_param(
                    "partNumbers", {"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}, required=True
                ),
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
