"""JSON errors (DESIGN §3): ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from core.db import DatabaseUnavailable
from server.auth import AuthError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def forbidden(message: str = "not allowed") -> ApiError:
    return ApiError(403, "forbidden", message)


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return error_response(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (a path may be split over several
    ``Route`` objects, and Starlette's own ``Allow`` names only the first one's)."""
    literal: set[str] = set()  # routes naming this path exactly win over templates
    templated: set[str] = set()  # (``/notifications/read-all`` is not ``/notifications/{id}``)
    for route in request.app.router.routes:
        match, child = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            (templated if child.get("path_params") else literal).update(route_methods)
    methods = literal or templated
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers or None,
    )


async def _db_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable", extra={"error": str(exc)})
    return error_response(
        503, "database_unavailable", "the database is unavailable; retry shortly", {"Retry-After": "5"}
    )


async def _unstorable_text(request: Request, exc: Exception) -> Response:
    # PostgreSQL text cannot hold NUL (or characters outside the encoding): bad input, never a 500.
    return error_response(400, "invalid_text", "text contains characters that cannot be stored (e.g. NUL)")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal", "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    AuthError: _auth_error,
    HTTPException: _http_error,
    DatabaseUnavailable: _db_unavailable,
    asyncpg.exceptions.CharacterNotInRepertoireError: _unstorable_text,
    asyncpg.exceptions.UntranslatableCharacterError: _unstorable_text,
    Exception: _unexpected,
}
