"""Bearer JWT verification (DESIGN §3): HS256 with a secret or RS256 through a JWKS URL.

Algorithms are an allowlist fixed by configuration, never taken from the token, so
``alg: none`` and HS/RS confusion are refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import jwt

from core.auth import Principal, Role
from core.settings import Settings
from server.jwks import JwksError, JwksKeys

VERIFIED_CACHE_SIZE = 10_000


class AuthError(Exception):
    """Why a token was refused; ``code`` is stable, the message is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        if not settings.jwt_secret and not settings.jwt_jwks_url:
            raise ValueError("BUILDPEER_JWT_SECRET or BUILDPEER_JWT_JWKS_URL must be set")
        self._secret = settings.jwt_secret
        self.jwks = (
            JwksKeys(
                settings.jwt_jwks_url,
                ttl_seconds=settings.jwt_jwks_cache_seconds,
                min_refresh_seconds=settings.jwt_jwks_min_refresh_seconds,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_seconds
        # Verified tokens, until their exp: polling clients send the same token many times
        # a minute. Bounded; the oldest entries go first. Worker threads verify too (JWKS).
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._verified_lock = threading.Lock()

    @property
    def blocking(self) -> bool:
        """Whether verifying may block (RS256: a JWKS fetch, an RSA verification)."""
        return self.jwks is not None

    async def verify_async(self, token: str) -> Principal:
        """:meth:`verify` for the event loop: a token not in the cache is verified in a worker
        thread when verifying may block (JWKS)."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        if self.blocking:
            return await asyncio.to_thread(self.verify, token)
        return self.verify(token)

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not expired since: one dictionary
        lookup, never blocking (callers go to :meth:`verify` off the loop only on a miss)."""
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at + self._leeway > time.time():
            return cached
        return None

    def verify(self, token: str, *, allow_expired: bool = False) -> Principal:
        """The token's principal, or :class:`AuthError` (blocking with JWKS: call it from a
        thread, or use :meth:`verify_async`)."""
        cached = self._verified.get(token)
        if cached is not None and (allow_expired or cached.expires_at + self._leeway > time.time()):
            return cached
        principal = self._verify(token, allow_expired=allow_expired)
        if not allow_expired:
            with self._verified_lock:
                self._verified[token] = principal
                if len(self._verified) > VERIFIED_CACHE_SIZE:
                    self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str, *, allow_expired: bool) -> Principal:
        """Full verification; blocking when a JWKS fetch is due (see :mod:`server.jwks`)."""
        if not token or len(token) > 8192:
            raise AuthError("invalid_token", "missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", "malformed token") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret:
            key = self._secret
        elif alg == "RS256" and self.jwks is not None:
            kid = header.get("kid")
            try:
                key = self.jwks.key(kid if isinstance(kid, str) else None)
            except JwksError as exc:
                raise AuthError("invalid_token", str(exc)) from exc
        else:
            raise AuthError("invalid_token", f"algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub", "aud", *(["iss"] if self._issuer else [])],
                    "verify_exp": not allow_expired,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("invalid_token", "wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("invalid_token", "wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("invalid_token", f"missing claim {exc.claim}") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    for name in ("sub", "tid", "role"):
        if not isinstance(claims.get(name), str):
            raise AuthError("invalid_token", f"missing claim {name}")
    try:
        user_id, tenant_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["tid"])
    except ValueError as exc:
        raise AuthError("invalid_token", "sub and tid must be UUIDs") from exc
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise AuthError("invalid_token", f"unknown role {claims['role']!r}") from exc
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise AuthError("invalid_token", "exp must be a number")
    return Principal(user_id=user_id, tenant_id=tenant_id, role=role, expires_at=int(exp))


def mint_token(
    settings: Settings,
    *,
    user_id: uuid.UUID | str,
    tenant_id: uuid.UUID | str,
    role: Role | str,
    ttl_seconds: int = 3600,
) -> str:
    """An HS256 token (dev and tests; production tokens come from the identity provider)."""
    if not settings.jwt_secret:
        raise ValueError("BUILDPEER_JWT_SECRET is needed to mint tokens")
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "tid": str(tenant_id),
        "role": str(Role(role)),
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
