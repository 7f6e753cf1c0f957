"""Who may act on an existing upload, and the JSON body / error helpers the routes share."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.auth import Principal
from server.errors import ApiError, forbidden
from server.uploads.parts import PartError
from server.uploads.validation import InvalidUpload

MAX_JSON_BODY = 1024 * 1024  # a complete with 10,000 parts is ~600 KB


def require_owner(principal: Principal, row: Mapping[str, Any]) -> None:
    """Acting on an upload (sign, list, complete, abort, progress): its uploader or an admin."""
    if principal.is_admin or row["uploader_id"] == principal.user_id:
        return
    raise forbidden("only the uploader or an admin may act on this upload")


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(413, "body_too_large", f"the JSON body is larger than {MAX_JSON_BODY} bytes")
    if not raw.strip():
        raise ApiError(400, "invalid_json", "a JSON object body is required")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def as_api_error(exc: InvalidUpload | PartError) -> ApiError:
    if isinstance(exc, InvalidUpload):
        return ApiError(exc.status, exc.code, exc.message)
    return ApiError(400, "invalid_part_number", str(exc))


Endpoint = Callable[[Request], Awaitable[Response]]


def companion_errors(endpoint: Endpoint) -> Endpoint:
    """Companion clients (Uppy) show a 4xx body's top-level ``message`` word for word, so
    /s3 errors carry it next to the standard ``{"error": {...}}``."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (InvalidUpload, PartError) as exc:
            error = as_api_error(exc)
        except ApiError as exc:
            error = exc
        return JSONResponse(
            {"error": {"code": error.code, "message": error.message}, "message": error.message},
            error.status,
            headers=error.headers,
        )

    return wrapper


def native_errors(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (InvalidUpload, PartError) as exc:
            raise as_api_error(exc) from None

    return wrapper
