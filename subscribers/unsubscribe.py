"""Signed one-click unsubscribe tokens (RFC 8058 links in the digest).

``<payload>.<mac>``, both base64url: the payload names the tenant, the user and the
list (``digest``); the MAC is HMAC-SHA256 under a key derived from
``settings.unsubscribe_secret`` (or ``jwt_secret``), so a token from one deployment
or for one purpose is worthless elsewhere. Tokens do not expire: a link in a months-old
email must still work, and all it can do is switch that user's digest off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from core.settings import Settings

PURPOSE = "digest"
_CONTEXT = b"buildpeer/unsubscribe/v1"


class InvalidUnsubscribeToken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    purpose: str = PURPOSE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(settings: Settings) -> bytes:
    secret = settings.unsubscribe_secret or settings.jwt_secret
    if not secret:
        raise RuntimeError("BUILDPEER_UNSUBSCRIBE_SECRET (or BUILDPEER_JWT_SECRET) must be set to sign links")
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def make_token(key: bytes, tenant_id: uuid.UUID, user_id: uuid.UUID, purpose: str = PURPOSE) -> str:
    payload = _b64(orjson.dumps({"t": str(tenant_id), "u": str(user_id), "p": purpose}))
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_token(key: bytes, token: str) -> Unsubscribe:
    if not token or len(token) > 512 or token.count(".") != 1:
        raise InvalidUnsubscribeToken("malformed token")
    payload, _, mac = token.partition(".")
    expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except ValueError:
        raise InvalidUnsubscribeToken("malformed token") from None
    if not hmac.compare_digest(expected, given):
        raise InvalidUnsubscribeToken("bad signature")
    try:
        data = orjson.loads(_unb64(payload))
        return Unsubscribe(uuid.UUID(data["t"]), uuid.UUID(data["u"]), str(data["p"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidUnsubscribeToken("malformed token") from None


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/unsubscribe?token={token}"


async def subscriber(conn: Any, request: Unsubscribe) -> dict[str, Any] | None:
    """Email and locale of the token's user (inside the token's tenant transaction)."""
    row = await conn.fetchrow(
        "SELECT u.email, COALESCE(u.locale, t.locale) AS locale FROM users u "
        "JOIN tenants t ON t.tenant_id = u.tenant_id WHERE u.user_id = $1",
        request.user_id,
    )
    return dict(row) if row else None
