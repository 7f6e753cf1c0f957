"""Who may do what: bearer authentication and the role + project-membership rules that
every route reuses. Another tenant's rows are invisible (RLS), so they answer 404."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from core import logging as ctx
from core.auth import Principal
from server.auth import AuthError, TokenVerifier
from server.errors import ApiError, forbidden, not_found
from server.session_cookie import cookie_token, has_session_cookie


def bearer_token(conn: HTTPConnection) -> str:
    return parse_bearer(conn.headers.get("authorization", ""))


def parse_bearer(header: str) -> str:
    """The token of an ``Authorization: Bearer`` header value, or :class:`AuthError`."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing_token", "an Authorization: Bearer token is required")
    return token.strip()


async def authenticate(conn: HTTPConnection) -> Principal:
    """The bearer token's principal; without an ``Authorization`` header, the session
    cookie's (same-origin requests only: :mod:`server.session_cookie`)."""
    if "authorization" not in conn.headers and has_session_cookie(conn):
        return await verify_bearer(conn.app.state, await cookie_token(conn))
    return await verify_bearer(conn.app.state, bearer_token(conn))


async def verify_bearer(state: Any, token: str) -> Principal:
    """The principal of ``token`` (``state`` is the app's): a token seen before is one
    dictionary lookup; only a new one is verified, off the loop when a JWKS may be fetched."""
    verifier: TokenVerifier = state.verifier
    principal = verifier.cached(token)
    if principal is None:
        if state.settings.jwt_jwks_url:
            principal = await run_in_threadpool(verifier.verify, token)  # may fetch the JWKS
        else:
            principal = verifier.verify(token)
    ctx.tenant_id.set(id_text(principal.tenant_id))
    return principal


_ID_TEXTS: dict[uuid.UUID, str] = {}
_ID_TEXTS_MAX = 100_000


def id_text(value: uuid.UUID) -> str:
    """``str(value)``, remembered for the ids requests repeat (tenants, users): formatting a
    UUID is a noticeable part of a cached poll. Bounded: past the cap, formatted each time."""
    text = _ID_TEXTS.get(value)
    if text is None:
        text = str(value)
        if len(_ID_TEXTS) < _ID_TEXTS_MAX:
            _ID_TEXTS[value] = text
    return text


def parse_uuid(value: str | None, what: str) -> uuid.UUID:
    """An id from a path or query; anything that is not a UUID cannot exist: 404."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise not_found(what) from None


async def is_member(conn: asyncpg.Connection, project_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2",
            project_id,
            user_id,
        )
    )


async def require_project_access(
    conn: asyncpg.Connection, principal: Principal, project_id: uuid.UUID, *, write: bool = False
) -> None:
    """``conn`` is inside the principal's tenant transaction."""
    if not await conn.fetchval("SELECT 1 FROM projects WHERE project_id = $1", project_id):
        raise not_found("project")
    if write and not principal.can_upload:
        raise forbidden(f"role {principal.role} cannot upload")
    if principal.is_admin:
        return
    if not await is_member(conn, project_id, principal.user_id):
        raise forbidden("not a member of this project")


async def readable_project_ids(conn: asyncpg.Connection, principal: Principal) -> list[uuid.UUID] | None:
    """The projects the principal may read; ``None`` means all of the tenant's (admins)."""
    if principal.is_admin:
        return None
    rows = await conn.fetch("SELECT project_id FROM project_members WHERE user_id = $1", principal.user_id)
    return [r["project_id"] for r in rows]


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "admins only")
