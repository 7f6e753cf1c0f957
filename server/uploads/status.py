"""``GET /api/v1/uploads/{id}``: the status document through Redis.

A poll is one Redis round trip: ``MGET`` of the document and the caller's cached right to
read it, or only a ``GET`` of the document while this process holds that right (the right's
value carries the time its Redis key expires, and the process keeps it no longer). Only a
miss reads PostgreSQL, in one statement, and refills both keys (misses of one caller that
land together share that read). Another tenant's id is a different Redis key and invisible
in PostgreSQL: 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import logging as ctx
from core.auth import Principal
from core.db import tenant_transaction
from core.settings import Settings
from core.upload_view import upload_document
from server.errors import forbidden, not_found
from server.middleware import VARY_ORIGIN, latency_observer, request_id, tracing
from server.permissions import authenticate, id_text, parse_bearer, parse_uuid, verify_bearer
from server.proxies import TrustedProxies
from server.status_cache import StatusCache, cache_key
from server.uploads import ratelimit, store

STATUS_DB_READS = Counter(
    "buildpeer_upload_status_db_reads_total", "Upload status reads that missed Redis and read PostgreSQL"
)
_ALLOWED = b"1"
_DENIED = b"0"


def access_key(tenant_id: uuid.UUID, user_id: uuid.UUID, upload_id: uuid.UUID) -> str:
    # (the status endpoint builds the same key from strings it already has)
    # the upload id is the hash tag of both keys the poll reads together (one Cluster slot)
    return f"bp:upload-access:{tenant_id}:{user_id}:{{{upload_id}}}"


def etag_of(raw: bytes) -> str:
    return '"' + hashlib.blake2b(raw, digest_size=12).hexdigest() + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


async def _read_through(
    pool: asyncpg.Pool, cache: StatusCache, principal: Principal, upload_id: uuid.UUID, raw: bytes | None
) -> tuple[bytes | None, bool]:
    STATUS_DB_READS.inc()
    async with tenant_transaction(pool, principal.tenant_id, readonly=True) as conn:
        row = await store.load_for_status(conn, upload_id, principal.user_id)
    if row is None:
        return None, False
    allowed = principal.is_admin or bool(row["is_member"])
    if raw is None:
        raw = await cache.put(principal.tenant_id, upload_document(row, list(row["derivative_kinds"])))
    await cache.set_raw(
        access_key(principal.tenant_id, principal.user_id, upload_id),
        b"%s:%d" % (_ALLOWED if allowed else _DENIED, int(time.time()) + cache.ttl),
    )
    return raw, allowed


class UploadStatusEndpoint:
    """The route as a bare ASGI app: the hot path of polling, so no ``Request`` or
    ``Response`` objects, one pass over the headers, one Redis round trip on a hit.
    Errors are raised as everywhere else (the app's exception handlers answer them).
    A poll with a bearer token already verified is served by :class:`StatusFastPath` in
    front of the middleware stack, through :meth:`answer` as here."""

    def __init__(self) -> None:
        # Misses being read through, per (tenant, user, upload): when the cached entry expires
        # under many pollers, the ones that miss together share one PostgreSQL read.
        self._flights: dict[str, asyncio.Future[tuple[bytes | None, bool]]] = {}
        # Read rights seen in Redis, by key: (allowed, when the Redis key expires).
        self._rights: dict[str, tuple[bool, int]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        authorization = if_none_match = ""
        cookie = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"cookie":
                cookie = True
        if authorization or not cookie:
            principal = await verify_bearer(state, parse_bearer(authorization))
        else:  # no bearer but a cookie: whatever the other routes accept (authenticate decides)
            principal = await authenticate(HTTPConnection(scope, receive))
        upload = scope["path_params"]["upload_id"]
        if not _CANONICAL_UUID.fullmatch(upload):  # any other spelling: parsed, then canonical
            upload = str(parse_uuid(upload, "upload"))
        status, headers, body = await self.answer(state, principal, upload, if_none_match)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(
        self, state: Any, principal: Principal, upload: str, if_none_match: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) of the poll of ``upload`` (canonical text) by
        ``principal``; :class:`ApiError` for 403 / 404."""
        cache: StatusCache = state.status_cache
        tenant, user = id_text(principal.tenant_id), id_text(principal.user_id)
        if principal.is_admin:
            raw = await cache.get(cache_key(tenant, upload))
            allowed: bool | None = True
        else:
            right_key = f"bp:upload-access:{tenant}:{user}:{{{upload}}}"
            known = self._rights.get(right_key)
            if known is not None and known[1] > time.time():
                raw, allowed = await cache.get(cache_key(tenant, upload)), known[0]
            else:
                raw, right = await cache.get_many(cache_key(tenant, upload), right_key)
                allowed = None if right is None else self._learn(right_key, right)
        if raw is None or allowed is None:
            raw, allowed = await self._read_once(
                f"{tenant}:{user}:{upload}",
                lambda: _read_through(state.pool, cache, principal, uuid.UUID(upload), raw),
            )
            if raw is None:
                raise not_found("upload")
        if not allowed:
            raise forbidden("not a member of this upload's project")
        etag = etag_of(raw).encode()
        if _matches(if_none_match, etag.decode()):
            return 304, [(b"etag", etag), _NO_CACHE], b""
        return 200, [(b"content-length", b"%d" % len(raw)), _JSON, (b"etag", etag), _NO_CACHE], raw

    def _learn(self, key: str, right: bytes) -> bool:
        """Whether the cached ``right`` allows; kept in this process until its key expires
        (``b"1:<expiry>"``; an old value without the expiry is used, not kept)."""
        allowed = right[:1] == _ALLOWED
        expiry = right[2:]
        if right[1:2] == b":" and expiry.isdigit() and int(expiry) > time.time():
            if len(self._rights) >= _RIGHTS_MAX:
                now = time.time()
                self._rights = {k: v for k, v in self._rights.items() if v[1] > now}
                if len(self._rights) >= _RIGHTS_MAX:
                    self._rights.clear()
            self._rights[key] = (allowed, int(expiry))
        return allowed

    async def _read_once(
        self, key: str, read: Callable[[], Awaitable[tuple[bytes | None, bool]]]
    ) -> tuple[bytes | None, bool]:
        """``read()``, or the result of the same read already in flight (its error too)."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)  # a poller that goes away leaves the read to the others

    def _landed(self, key: str, flight: asyncio.Future[tuple[bytes | None, bool]]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every waiter may have gone


_RIGHTS_MAX = 100_000  # read rights a process keeps (each about 200 bytes)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JSON = (b"content-type", b"application/json")
_NO_CACHE = (b"cache-control", b"private, no-cache")
upload_status = UploadStatusEndpoint()
ROUTE = "/api/v1/uploads/{upload_id}"
_PREFIX = "/api/v1/uploads/"
_PATH_LENGTH = len(_PREFIX) + 36


class StatusFastPath:
    """The app's outermost layer. A poll of ``GET /api/v1/uploads/{id}`` with a bearer token
    already verified — the polling hot path — is answered here, in front of Starlette's error
    middleware, the middleware stack and the router, with what that stack does for it: the
    ``X-Request-ID`` (taken when sane, else made) and ``Vary: Origin`` on the response, the
    request and tenant ids in the log context, the latency histogram (same labels), the rate
    limits when configured (the client address through the trusted proxies), errors answered
    by the app's exception handlers. Everything else goes to the stack unchanged: other paths
    and methods, requests with ``Origin`` (CORS), without a bearer token (401, session
    cookies), with a token not verified yet, an id not in canonical form, and every request
    while tracing is on (the server span)."""

    def __init__(
        self, app: ASGIApp, settings: Settings, endpoint: UploadStatusEndpoint = upload_status
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.proxies = TrustedProxies(settings.trusted_proxies)  # as ClientAddressMiddleware's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or len(path := scope["path"]) != _PATH_LENGTH
            or not path.startswith(_PREFIX)
            or scope.get("root_path")
            or not _CANONICAL_UUID.fullmatch(upload := path[len(_PREFIX) :])
        ):
            await self.app(scope, receive, send)
            return
        authorization = if_none_match = sent_id = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"x-request-id":
                sent_id = sent_id or value.decode("latin-1")
            elif name == b"origin":
                await self.app(scope, receive, send)
                return
        state = scope["app"].state
        scheme, _, token = authorization.partition(" ")
        principal = state.verifier.cached(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None or tracing():
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(sent_id)
        rid_context = ctx.request_id.set(rid)
        tenant_context = ctx.tenant_id.set(id_text(principal.tenant_id))
        extra = (VARY_ORIGIN, (b"x-request-id", rid.encode()))
        status = 500
        try:
            settings: Settings = state.settings
            retry_after = 0
            if settings.rate_limit_ip_per_minute or settings.rate_limit_tenant_per_minute:
                retry_after = await self._over_limit(scope, state, settings, principal)
            if retry_after:
                status = 429
                await ratelimit.reject(_adding(send, extra), retry_after)
                return
            try:
                status, headers, body = await self.endpoint.answer(state, principal, upload, if_none_match)
            except Exception as exc:
                status = await self._handle(scope, receive, _adding(send, extra), exc)
                return
            headers += extra
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            latency_observer("GET", ROUTE, status).observe(time.perf_counter() - started)
            ctx.tenant_id.reset(tenant_context)
            ctx.request_id.reset(rid_context)

    async def _over_limit(self, scope: Scope, state: Any, settings: Settings, principal: Principal) -> int:
        """What :class:`server.uploads.ratelimit.RateLimitMiddleware` counts for this request."""
        client = scope["client"][0] if scope.get("client") else None
        if client and self.proxies.networks:
            client = self.proxies.client(client, scope["headers"])[0]
        checks = ratelimit.limits_for(settings, client=client, tenant=str(principal.tenant_id))
        redis = getattr(state, "redis", None)
        if not checks or redis is None:
            return 0
        return await ratelimit.over_limit(redis, checks)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> int:
        """The app's exception handler for ``exc`` (by its class's MRO, as Starlette looks it
        up) answers; the status it sent."""
        handlers = scope["app"].exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)
        return int(response.status_code)


def _adding(send: Send, extra: tuple[tuple[bytes, bytes], ...]) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return sender


def parse_document(raw: bytes) -> dict[str, object]:
    result: dict[str, object] = orjson.loads(raw)
    return result
