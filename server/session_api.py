"""``POST /api/v1/session`` (bearer token → session cookie) and ``DELETE /api/v1/session``
(logout): see :mod:`server.session_cookie`."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.db import tenant_transaction
from server import openapi as oa
from server.auth import AuthError
from server.permissions import authenticate, bearer_token, verify_bearer
from server.session_cookie import (
    COOKIE_NAME,
    SessionStore,
    cookie_attributes,
    has_session_cookie,
    require_same_origin,
)


async def create_session(request: Request) -> Response:
    """Needs the bearer header itself (a cookie cannot mint another cookie); answers
    ``{user_id, tenant_id, role, expires_at}`` and sets the cookie, expiring with the token."""
    state = request.app.state
    token = bearer_token(request)
    principal = await verify_bearer(state, token)
    session_id, ttl = await SessionStore(state.redis).create(token, principal.expires_at)
    response = JSONResponse(
        {
            "user_id": str(principal.user_id),
            "tenant_id": str(principal.tenant_id),
            "role": str(principal.role),
            "expires_at": datetime.fromtimestamp(principal.expires_at, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        },
        201,
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(COOKIE_NAME, session_id, **cookie_attributes(state.settings.public_url, ttl))  # type: ignore[arg-type]
    return response


async def end_session(request: Request) -> Response:
    """Ends the cookie's session (its Redis record goes, so the same cookie is 401 after) and
    clears the cookie: 204. No cookie: 401; a cookie from another origin: 403."""
    state = request.app.state
    if not has_session_cookie(request):
        raise AuthError("missing_session", "no session cookie to end")
    require_same_origin(request, state.settings.public_url)
    await SessionStore(state.redis).end(request.cookies.get(COOKIE_NAME, ""))
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    attributes = cookie_attributes(state.settings.public_url, 0)
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        secure=bool(attributes["secure"]),
        httponly=True,
        samesite="strict",
    )
    return response


async def me(request: Request) -> Response:
    """``GET /api/v1/me``: the caller (user, email, role, tenant) and the projects they may
    read, by name (admins: all of the tenant's; others: their memberships), sorted by name."""
    principal = await authenticate(request)
    pool = request.app.state.pool
    async with tenant_transaction(pool, principal.tenant_id, readonly=True) as conn:
        user = await conn.fetchrow("SELECT email, locale FROM users WHERE user_id = $1", principal.user_id)
        tenant = await conn.fetchrow("SELECT name FROM tenants WHERE tenant_id = $1", principal.tenant_id)
        if principal.is_admin:
            rows = await conn.fetch("SELECT project_id, name FROM projects ORDER BY name, project_id")
        else:
            rows = await conn.fetch(
                "SELECT p.project_id, p.name FROM projects p JOIN project_members m USING (project_id) "
                "WHERE m.user_id = $1 ORDER BY p.name, p.project_id",
                principal.user_id,
            )
    if user is None:
        raise AuthError("unknown_user", "the token's user does not exist in its tenant")
    return JSONResponse(
        {
            "user": {"id": str(principal.user_id), "email": user["email"], "locale": user["locale"]},
            "role": str(principal.role),
            "tenant": {"id": str(principal.tenant_id), "name": tenant["name"] if tenant else None},
            "projects": [{"id": str(r["project_id"]), "name": r["name"]} for r in rows],
            "can_upload": principal.can_upload,
        },
        headers={"Cache-Control": "no-store"},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/session", create_session, methods=["POST"]),
        Route("/api/v1/session", end_session, methods=["DELETE"]),
        Route("/api/v1/me", me, methods=["GET"]),
    ]


def _document() -> None:
    session_cookie = {
        "Set-Cookie": {
            "description": f"`{COOKIE_NAME}=<opaque id>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<token "
            f"lifetime>` "
            "(`Secure` when the public URL is https)",
            "schema": {"type": "string"},
        }
    }
    oa.describe(
        create_session,
        "post",
        {
            "tags": ["session"],
            "summary": "Trade a bearer token for a session cookie (one origin)",
            "description": "For stock Uppy 6 in Companion mode, which sends no headers. The cookie is "
            "accepted "
            "on /s3/* and /api/v1/* only when the request's Origin (or Referer) is the public origin (403 "
            "otherwise), and expires with the token (401 after).",
            "operationId": "createSession",
            "security": oa.BEARER,
            "responses": {
                "201": {
                    **oa.json_response(
                        {
                            "type": "object",
                            "required": ["user_id", "tenant_id", "role", "expires_at"],
                            "properties": {
                                "user_id": UUID,
                                "tenant_id": UUID,
                                "role": {"type": "string", "enum": ["admin", "field_worker", "investor"]},
                                "expires_at": {"type": "string", "format": "date-time"},
                            },
                        },
                        "Session opened",
                    ),
                    "headers": session_cookie,
                },
                **oa.errors(401, 429),
            },
        },
    )
    oa.describe(
        end_session,
        "delete",
        {
            "tags": ["session"],
            "summary": "End the session (logout)",
            "operationId": "endSession",
            "security": [{"sessionCookie": []}],
            "responses": {"204": {"description": "Ended; the cookie is cleared"}, **oa.errors(401, 403, 429)},
        },
    )
    oa.describe(
        me,
        "get",
        {
            "tags": ["session"],
            "summary": "Who am I: user, role, tenant and the projects I may read, by name",
            "operationId": "getMe",
            "security": [*oa.BEARER, {"sessionCookie": []}],
            "responses": {
                "200": oa.json_response(
                    {
                        "type": "object",
                        "required": ["user", "role", "tenant", "projects", "can_upload"],
                        "properties": {
                            "user": {
                                "type": "object",
                                "required": ["id", "email"],
                                "properties": {
                                    "id": UUID,
                                    "email": {"type": "string"},
                                    "locale": {"type": "string", "nullable": True},
                                },
                            },
                            "role": {"type": "string", "enum": ["admin", "field_worker", "investor"]},
                            "tenant": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {"id": UUID, "name": {"type": "string", "nullable": True}},
                            },
                            "projects": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "name"],
                                    "properties": {"id": UUID, "name": {"type": "string"}},
                                },
                            },
                            "can_upload": {"type": "boolean"},
                        },
                    }
                )
                | {"links": ME_LINKS},
                **oa.errors(401, 403, 429),
            },
        },
    )


UUID = {"type": "string", "format": "uuid"}
_FIRST_PROJECT = "$response.body#/projects/0/id"
ME_LINKS = {  # the caller's projects feed the routes that need one (stateful tests reach uploads)
    "ProjectUploads": {"operationId": "listProjectUploads", "parameters": {"project_id": _FIRST_PROJECT}},
    "CreateMultipart": {
        "operationId": "s3CreateMultipart",
        "requestBody": {
            "filename": "plano.pdf",
            "type": "application/pdf",
            "size": 12582912,
            "metadata": {"projectId": _FIRST_PROJECT},
        },
    },
}
_document()
