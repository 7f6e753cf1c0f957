"""Upload status in Redis (30 s TTL): read-through on a miss, write-through on change.

Key: ``bp:upload:{tenant_id}:{upload_id}`` → the JSON of :func:`core.upload_view.upload_document`.
Tenant in the key, so one tenant's id never reads another tenant's entry.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from redis.asyncio import Redis


def cache_key(tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> str:
    return f"bp:upload:{tenant_id}:{upload_id}"


class StatusCache:
    def __init__(self, redis: Redis, ttl_seconds: int = 30) -> None:
        self.redis = redis
        self.ttl = ttl_seconds

    async def get_raw(self, tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> bytes | None:
        value = await self.redis.get(cache_key(tenant_id, upload_id))
        return value if isinstance(value, bytes) or value is None else str(value).encode()

    async def put(self, tenant_id: uuid.UUID | str, document: dict[str, Any]) -> bytes:
        raw = orjson.dumps(document)
        await self.redis.set(cache_key(tenant_id, document["id"]), raw, ex=self.ttl)
        return raw

    async def invalidate(self, tenant_id: uuid.UUID | str, upload_id: uuid.UUID | str) -> None:
        await self.redis.delete(cache_key(tenant_id, upload_id))
