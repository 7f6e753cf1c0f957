"""The session cookie of one origin (issue 13): stock Uppy 6 in Companion mode sends no
headers, only the cookies of its own origin, so ``POST /api/v1/session`` trades a bearer
token for an opaque session id kept in Redis until the token expires.

The cookie is an HttpOnly, SameSite=Strict random id (never the token itself): ending the
session deletes the Redis record, so a copied cookie stops working at logout. A request
authenticated by the cookie alone is accepted only when its ``Origin`` (or, when the browser
sends none, as on a same-origin GET, its ``Referer``) is the public origin; anything else is
403 before the cookie is even looked up."""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from server.auth import AuthError
from server.errors import ApiError

COOKIE_NAME = "bp_session"
KEY_PREFIX = "bp:session:"
MAX_COOKIE_LENGTH = 128


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` (default ports dropped), lower case; None if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


def request_origin(conn: HTTPConnection) -> str | None:
    """The origin the browser says the request comes from: ``Origin``, else ``Referer``'s."""
    origin = conn.headers.get("origin")
    if origin is not None:
        return origin_of(origin)
    referer = conn.headers.get("referer")
    return origin_of(referer) if referer else None


def require_same_origin(conn: HTTPConnection, public_url: str) -> None:
    expected = origin_of(public_url)
    if expected is None or request_origin(conn) != expected:
        raise ApiError(
            403,
            "cross_origin",
            f"the session cookie is accepted only on requests from {expected}; send a bearer token",
        )


def cookie_attributes(public_url: str, max_age: int) -> dict[str, object]:
    """Arguments of ``Response.set_cookie``: ``Secure`` when the public URL is https."""
    return {
        "max_age": max(0, max_age),
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": public_url.startswith("https://"),
    }


class SessionStore:
    """Session id → bearer token in Redis, expiring with the token. Only a hash of the id is
    stored, so a Redis dump holds no usable cookie."""

    def __init__(self, redis: object) -> None:
        self._redis = redis

    @staticmethod
    def _key(session_id: str) -> str:
        return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()

    async def create(self, token: str, expires_at: int) -> tuple[str, int]:
        """A new session for ``token``: ``(id, seconds it lives)``."""
        ttl = int(expires_at - time.time())
        if ttl <= 0:
            raise AuthError("token_expired", "token expired")
        session_id = secrets.token_urlsafe(32)
        await self._redis.set(self._key(session_id), token, ex=ttl)  # type: ignore[attr-defined]
        return session_id, ttl

    async def token(self, session_id: str) -> str | None:
        if not session_id or len(session_id) > MAX_COOKIE_LENGTH:
            return None
        raw = await self._redis.get(self._key(session_id))  # type: ignore[attr-defined]
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def end(self, session_id: str) -> None:
        if session_id and len(session_id) <= MAX_COOKIE_LENGTH:
            await self._redis.delete(self._key(session_id))  # type: ignore[attr-defined]


def has_session_cookie(conn: HTTPConnection) -> bool:
    return COOKIE_NAME in conn.cookies


async def cookie_token(conn: HTTPConnection) -> str:
    """The bearer token behind the request's session cookie: 403 off the public origin,
    401 when the session is unknown, ended or expired."""
    state = conn.app.state
    require_same_origin(conn, state.settings.public_url)
    token = await SessionStore(state.redis).token(conn.cookies.get(COOKIE_NAME, ""))
    if token is None:
        raise AuthError("session_expired", "the session ended or expired: sign in again")
    return token
