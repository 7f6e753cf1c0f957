"""Status reads through Redis, writes through on change, ETags, listing, progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from core.events import EventType
from server.redis_client import RedisClient
from server.status_cache import cache_key
from server.uploads.status import STATUS_DB_READS
from tests import redis_backends
from tests.conftest import TenantFixture
from tests.uploads.conftest import create_multipart, sign_part

# Every test here runs on the single Redis and on a real six-process Redis Cluster.
settings = redis_backends.settings
redis = redis_backends.redis


class CountingPool:
    """The app's pool, counting every connection taken from it (any query needs one)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        self.acquired += 1
        return self.pool.acquire(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


async def test_1000_polls_cost_at_most_one_database_read(
    client: httpx.AsyncClient, tenant: TenantFixture, redis: RedisClient, app: Any
) -> None:
    h = tenant.auth("investor")  # reads are authorised per project: the right is cached too
    mp = await create_multipart(client, tenant.auth("field_worker"), tenant.projects[0])
    await redis.delete(cache_key(tenant.tenant_id, mp.id))  # start cold
    before = STATUS_DB_READS._value.get()
    counting = app.state.pool = CountingPool(app.state.pool)
    started = time.monotonic()
    etag = None
    for i in range(1000):
        headers = {**h, "If-None-Match": etag} if etag and i % 2 else h
        r = await client.get(f"/api/v1/uploads/{mp.id}", headers=headers)
        assert r.status_code in (200, 304)
        etag = r.headers["etag"]
    elapsed = time.monotonic() - started
    app.state.pool = counting.pool
    reads = STATUS_DB_READS._value.get() - before
    if elapsed < 30:  # the cache TTL; on a very slow machine a second read is legitimate
        assert reads <= 1, reads
        assert counting.acquired <= 1, counting.acquired
    assert reads >= 1 and counting.acquired >= 1  # the first poll was a miss


async def test_concurrent_misses_share_one_database_read(
    client: httpx.AsyncClient, tenant: TenantFixture, redis: RedisClient, app: Any
) -> None:
    """The entry expires under many pollers at once: those that miss together wait for one
    read-through instead of each reading PostgreSQL."""
    h = tenant.auth("investor")
    mp = await create_multipart(client, tenant.auth("field_worker"), tenant.projects[0])
    await redis.delete(cache_key(tenant.tenant_id, mp.id))
    counting = app.state.pool = CountingPool(app.state.pool)
    try:
        replies = await asyncio.gather(
            *(client.get(f"/api/v1/uploads/{mp.id}", headers=h) for _ in range(50))
        )
    finally:
        app.state.pool = counting.pool
    assert {r.status_code for r in replies} == {200}
    assert len({r.content for r in replies}) == 1
    assert counting.acquired == 1, counting.acquired


async def test_etag_and_not_modified(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0])
    first = await client.get(f"/api/v1/uploads/{mp.id}", headers=h)
    etag = first.headers["etag"]
    assert first.json()["status"] == "pending"
    again = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    weak = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "If-None-Match": f'W/{etag}, "x"'})
    assert weak.status_code == 304
    # A change writes through: the next poll sees it at once, with a new ETag.
    await sign_part(client, h, mp, 1)
    changed = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["status"] == "uploading"
    assert changed.headers["etag"] != etag


async def test_write_through_without_database_read(
    client: httpx.AsyncClient, tenant: TenantFixture, redis: RedisClient
) -> None:
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0])
    await client.get(f"/api/v1/uploads/{mp.id}", headers=h)  # caches the read right
    before = STATUS_DB_READS._value.get()
    await client.delete(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=h)
    doc = (await client.get(f"/api/v1/uploads/{mp.id}", headers=h)).json()
    assert (doc["status"], doc["reason"]) == ("failed", "aborted")
    assert STATUS_DB_READS._value.get() == before
    assert await redis.ttl(cache_key(tenant.tenant_id, mp.id)) <= 30


async def test_progress_moves_to_uploading_and_publishes_throttled(
    client: httpx.AsyncClient, tenant: TenantFixture, app: Any
) -> None:
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0], size=12 * 1024 * 1024)
    publisher = app.state.publisher
    first = await client.post(f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 1000}, headers=h)
    assert first.status_code == 200 and first.json()["status"] == "uploading" and first.json()["published"]
    second = await client.post(f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 2000}, headers=h)
    assert second.status_code == 200 and second.json()["bytes_done"] == 2000
    assert second.json()["published"] is False  # within the same second
    # Counters never go backwards.
    third = await client.post(f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 10}, headers=h)
    assert third.json()["bytes_done"] == 2000
    events = [e for e in publisher.events if str(e.upload_id) == mp.id]
    assert len(events) == 1
    event = events[0]
    assert event.type is EventType.UPLOAD_PROGRESS and event.status == "uploading"
    assert event.tenant_id == tenant.tenant_id and event.data["bytes_done"] == 1000
    status = (await client.get(f"/api/v1/uploads/{mp.id}", headers=h)).json()
    assert status["bytes_done"] == 2000
    too_far = await client.post(
        f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 13 * 1024**2}, headers=h
    )
    assert too_far.status_code == 400


async def test_project_listing_paginates(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth("field_worker")
    ids = [(await create_multipart(client, h, tenant.projects[0], filename=f"f{i}.pdf")).id for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"/api/v1/projects/{tenant.projects[0]}/uploads", params=params, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [d["id"] for d in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids)) and pages == 3
    investor = await client.get(
        f"/api/v1/projects/{tenant.projects[0]}/uploads", headers=tenant.auth("investor")
    )
    assert investor.status_code == 200 and len(investor.json()["items"]) == 5
    empty = await client.get(f"/api/v1/projects/{tenant.projects[1]}/uploads", headers=tenant.auth("admin"))
    assert empty.json() == {"items": [], "next_cursor": None}
