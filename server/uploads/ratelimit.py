"""Request rate limits in Redis: per client IP and per tenant, fixed one-minute windows
shared by every server instance. Over the limit: 429 with ``Retry-After``.

Pure ASGI middleware. The client IP is ``scope["client"]`` as :mod:`server.proxies` set it
from the trusted proxy chain (``BUILDPEER_TRUSTED_PROXIES``): behind CloudFront and the ALB
each viewer has its own budget, and a forged ``X-Forwarded-For`` from outside the chain
names nobody. The tenant comes from a *verified* bearer token (an unverified ``tid`` would
let anyone spend another tenant's budget; with a JWKS it is verified off the event loop);
requests without one count against their IP only. Health checks and CORS preflights are
not counted.
"""

from __future__ import annotations

import logging
import time

import orjson
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from server.auth import AuthError, TokenVerifier
from server.redis_client import RedisClient

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
EXEMPT_PATHS = frozenset({"/health"})


def window_key(kind: str, ident: str, window: int) -> str:
    # one hash tag per counted identity (a tenant's or an IP's windows share a Cluster slot);
    # the pipeline is not a transaction, so a Cluster client sends each key to its own node
    return f"bp:rl:{{{kind}:{ident}}}:{window}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        redis: RedisClient | None = getattr(state, "redis", None)
        client = scope["client"][0] if scope.get("client") else None
        tenant = await _tenant(scope, state.verifier) if settings.rate_limit_tenant_per_minute else None
        checks = limits_for(settings, client=client, tenant=tenant)
        if checks and redis is not None:
            retry_after = await over_limit(redis, checks)
            if retry_after:
                await reject(send, retry_after)
                return
        await self.app(scope, receive, send)


Check = tuple[str, str, int]  # (kind, identity, requests per minute)


def limits_for(settings: Settings, *, client: str | None, tenant: str | None) -> list[Check]:
    """The windows a request counts in: its client address's and its tenant's, where set."""
    checks: list[Check] = []
    if settings.rate_limit_ip_per_minute and client:
        checks.append(("ip", client, settings.rate_limit_ip_per_minute))
    if settings.rate_limit_tenant_per_minute and tenant:
        checks.append(("tenant", tenant, settings.rate_limit_tenant_per_minute))
    return checks


async def _tenant(scope: Scope, verifier: TokenVerifier) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            try:
                return str((await verifier.verify_async(token.strip())).tenant_id)
            except AuthError:
                return None  # the route answers 401; the IP limit still counts it
    return None


async def over_limit(redis: RedisClient, checks: list[Check]) -> int:
    """Count this request in each window; seconds until the window ends when over."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for kind, ident, _ in checks:
                key = window_key(kind, ident, window)
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS + 5)
            results = await pipe.execute()
    except RedisError as exc:  # fail open: a Redis hiccup must not take the API down
        log.warning("rate limiter unavailable", extra={"error": str(exc)})
        return 0
    for index, (_, _, limit) in enumerate(checks):
        if int(results[index * 2]) > limit:
            return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
    return 0


async def reject(send: Send, retry_after: int) -> None:
    """The 429 answer, with ``Retry-After``."""
    body = orjson.dumps(
        {
            "error": {"code": "rate_limited", "message": f"too many requests; retry in {retry_after} s"},
            "message": f"too many requests; retry in {retry_after} s",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
