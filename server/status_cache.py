"""Upload status in Redis (30 s TTL): read-through on a miss, write-through on change.

Key: ``bp:upload:<tenant_id>:{<upload_id>}`` → the JSON of :func:`core.upload_view.upload_document`.
Tenant in the key, so one tenant's id never reads another tenant's entry. The upload id is the
key's hash tag (``{...}``): the status route's ``MGET`` of the document and the caller's read
right (``server.uploads.status.access_key``, same tag) stays in one Redis Cluster slot.

Writes are versioned: a document never replaces a cached one of a higher ``version`` (writers
that raced — the API after its commit, the events consumer inside its transaction, a polling
read-through — may reach Redis in any order; the newest change stays cached).

The cache fails soft: when Redis is unreachable a read is a miss (the caller reads
PostgreSQL) and a write is skipped, so polling keeps answering 200 through a Redis outage.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from redis.exceptions import RedisError

from server.redis_client import RedisClient

log = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 10.0

# SET unless the cached document has a higher version (ARGV: document, its version, TTL).
_PUT_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  local cached = ok and type(doc) == 'table' and tonumber(doc['version'])
  if cached and cached > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


def cache_key(tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> str:
    return f"bp:upload:{tenant_id}:{{{upload_id}}}"


class StatusCache:
    def __init__(self, redis: RedisClient, ttl_seconds: int = 30) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self._last_warning = 0.0
        self._put_newer = redis.register_script(_PUT_NEWER)

    def _unavailable(self, operation: str, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._last_warning > WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning(
                "status cache unavailable; using PostgreSQL",
                extra={"operation": operation, "error": str(exc)},
            )

    async def get_many(self, *keys: str) -> list[bytes | None]:
        """Raw values of ``keys``; all ``None`` when Redis is unreachable."""
        try:
            values = await self.redis.mget(keys)
        except RedisError as exc:
            self._unavailable("get", exc)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) or v is None else str(v).encode() for v in values]

    async def get(self, key: str) -> bytes | None:
        """The raw value of ``key`` (one ``GET``); ``None`` when Redis is unreachable."""
        try:
            value = await self.redis.get(key)
        except RedisError as exc:
            self._unavailable("get", exc)
            return None
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def get_raw(self, tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> bytes | None:
        return await self.get(cache_key(tenant_id, upload_id))

    async def set_raw(self, key: str, value: bytes) -> None:
        try:
            await self.redis.set(key, value, ex=self.ttl)
        except RedisError as exc:
            self._unavailable("set", exc)

    async def put(self, tenant_id: uuid.UUID | str, document: dict[str, Any]) -> bytes:
        """Cache ``document`` unless a newer version of it is cached; returns its JSON."""
        raw = orjson.dumps(document)
        try:
            await self._put_newer(
                keys=[cache_key(tenant_id, document["id"])], args=[raw, int(document["version"]), self.ttl]
            )
        except RedisError as exc:
            self._unavailable("set", exc)
        return raw

    async def invalidate(self, tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> None:
        try:
            await self.redis.delete(cache_key(tenant_id, upload_id))
        except RedisError as exc:
            self._unavailable("invalidate", exc)
