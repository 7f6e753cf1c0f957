"""``GET /api/v1/uploads/{id}``: the status document through Redis.

A poll is one Redis round trip (``MGET`` of the document and the caller's cached right to
read it); only a miss reads PostgreSQL, in one statement, and refills both keys (misses of
one caller that land together share that read). Another tenant's id is a different Redis key
and invisible in PostgreSQL: 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import orjson
from prometheus_client import Counter
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from core.auth import Principal
from core.db import tenant_transaction
from core.upload_view import upload_document
from server.errors import forbidden, not_found
from server.permissions import authenticate, id_text, parse_bearer, parse_uuid, verify_bearer
from server.status_cache import StatusCache, cache_key
from server.uploads import store

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
        access_key(principal.tenant_id, principal.user_id, upload_id), _ALLOWED if allowed else _DENIED
    )
    return raw, allowed


class UploadStatusEndpoint:
    """The route as a bare ASGI app: the hot path of polling, so no ``Request`` or
    ``Response`` objects, one pass over the headers, one Redis round trip on a hit.
    Errors are raised as everywhere else (the app's exception handlers answer them)."""

    def __init__(self) -> None:
        # Misses being read through, per (tenant, user, upload): when the cached entry expires
        # under many pollers, the ones that miss together share one PostgreSQL read.
        self._flights: dict[str, asyncio.Future[tuple[bytes | None, bool]]] = {}

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
        cache: StatusCache = state.status_cache
        tenant, user = id_text(principal.tenant_id), id_text(principal.user_id)
        if principal.is_admin:
            raw = (await cache.get_many(cache_key(tenant, upload)))[0]
            allowed: bool | None = True
        else:
            raw, right = await cache.get_many(
                cache_key(tenant, upload), f"bp:upload-access:{tenant}:{user}:{{{upload}}}"
            )
            allowed = None if right is None else right == _ALLOWED
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
            status, headers, body = 304, [(b"etag", etag), _NO_CACHE], b""
        else:
            status, body = 200, raw
            headers = [(b"content-length", b"%d" % len(raw)), _JSON, (b"etag", etag), _NO_CACHE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

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


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JSON = (b"content-type", b"application/json")
_NO_CACHE = (b"cache-control", b"private, no-cache")
upload_status = UploadStatusEndpoint()


def parse_document(raw: bytes) -> dict[str, object]:
    result: dict[str, object] = orjson.loads(raw)
    return result
