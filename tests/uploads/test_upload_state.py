"""One owner of upload state (issue 12): every writer — the API, a processor, the events
consumer, the stale sweeper — moves an upload through core.transition, and the one
after-change step (server.uploads.changes) caches, counts and publishes each change exactly
once. Real PostgreSQL, Redis, moto S3 over HTTP; no timing thresholds."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from core.db import tenant_transaction
from core.events import Event, EventType
from core.publish import MemoryPublisher
from core.settings import Settings
from core.status import ReasonCode, UploadStatus, can_transition, rank
from core.transition import transition
from processors.common import store as pipeline_store
from processors.common.s3event import ObjectRef
from server.status_cache import StatusCache
from server.uploads.changes import ProgressThrottle
from server.uploads.event_applier import EventApplier
from server.uploads.sweeper import sweep_once
from tests.conftest import TenantFixture, insert_upload
from tests.uploads.conftest import Multipart, create_multipart, put_part, sign_part

METRIC = "buildpeer_upload_status_changes_total"


class RecordingPublisher(MemoryPublisher):
    """Keeps every (event, document) the after-change step hands to the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[Event, dict[str, Any]]] = []

    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:
        await super().publish(event, upload)
        assert upload is not None, "every publication of a change carries the new document"
        self.published.append((event, upload))


def metric_counts() -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        if family.name == METRIC.removesuffix("_total"):
            for sample in family.samples:
                if sample.name == METRIC:
                    counts[(sample.labels["status"], sample.labels["reason"])] = int(sample.value)
    return counts


def published_for(published: list[tuple[Event, dict[str, Any]]], upload_id: str) -> list[dict[str, Any]]:
    """The documents published for one upload, in version order."""
    return sorted((doc for _, doc in published if doc["id"] == upload_id), key=lambda d: d["version"])


async def complete(
    client: httpx.AsyncClient, headers: dict[str, str], mp: Multipart, etag: str
) -> httpx.Response:
    return await client.post(
        f"/s3/multipart/{mp.upload_id}/complete",
        params={"key": mp.key},
        json={"parts": [{"PartNumber": 1, "ETag": etag}]},
        headers=headers,
    )


async def test_complete_right_after_a_progress_report_still_publishes_uploaded(
    client: httpx.AsyncClient, app: Starlette, tenant: TenantFixture, redis: Any
) -> None:
    """The regression: ``complete`` used to publish ``uploaded`` through the one-per-second
    progress throttle, so a progress report less than a second earlier swallowed it."""
    recorder = RecordingPublisher()
    app.state.publisher = recorder
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0])
    etag = await put_part(await sign_part(client, h, mp, 1), b"x" * 1000)  # → uploading (published)
    progress = await client.post(f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 500}, headers=h)
    assert progress.status_code == 200, progress.text
    # However long that took, the progress window is open now (as right after a published
    # progress report): a further progress event would be throttled ...
    await ProgressThrottle(redis, interval_ms=600_000).mark(mp.id)
    assert not await ProgressThrottle(redis).allow(mp.id)
    before = metric_counts()
    done = await complete(client, h, mp, etag)
    assert done.status_code == 200, done.text
    # ... but the status change is not: published (once) and counted (once).
    mine = [(e, d) for e, d in recorder.published if d["id"] == mp.id]
    uploaded = [(e, d) for e, d in mine if e.status is UploadStatus.UPLOADED]
    assert len(uploaded) == 1
    event, document = uploaded[0]
    assert event.type is EventType.UPLOAD_PROGRESS and document["status"] == "uploaded"
    assert document["bytes_done"] == 1000 and document["parts_done"] == 1
    assert metric_counts()[("uploaded", "")] - before[("uploaded", "")] == 1
    # The status route (cache written through) says uploaded at once.
    status = await client.get(f"/api/v1/uploads/{mp.id}", headers=h)
    assert status.json()["status"] == "uploaded"
    # A second complete (a retry after a dropped response) answers the same and changes nothing.
    again = await complete(client, h, mp, etag)
    assert again.status_code == 200
    assert (
        len([1 for e, d in recorder.published if d["id"] == mp.id and e.status is UploadStatus.UPLOADED]) == 1
    )


async def test_list_parts_changes_nothing(
    client: httpx.AsyncClient, app: Starlette, tenant: TenantFixture
) -> None:
    recorder = RecordingPublisher()
    app.state.publisher = recorder
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0])
    await put_part(await sign_part(client, h, mp, 1), b"y" * 100)
    first = (await client.get(f"/api/v1/uploads/{mp.id}", headers=h)).json()
    before, published = metric_counts(), len(recorder.published)
    for _ in range(3):
        r = await client.get(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=h)
        assert r.status_code == 200 and [p["PartNumber"] for p in r.json()] == [1]
    after = (await client.get(f"/api/v1/uploads/{mp.id}", headers=h)).json()
    assert (after["status"], after["version"], after["bytes_done"]) == (
        first["status"],
        first["version"],
        first["bytes_done"],
    )
    assert metric_counts() == before and len(recorder.published) == published


async def api_complete(client: httpx.AsyncClient, h: dict[str, str], mp: Multipart, etag: str) -> None:
    r = await complete(client, h, mp, etag)
    assert r.status_code in (200, 409), r.text  # 409: failed first


async def processor_dead_letter(pool: asyncpg.Pool, ref: ObjectRef, sink: list[Event]) -> None:
    """The dead-letter handler's store call: the scan step failed repeatedly."""
    sink.extend(
        await pipeline_store.fail_step(pool, ref, "scan", ReasonCode.PROCESSING_FAILED, {"error": "t"})
    )


async def _version(pool: asyncpg.Pool, t: TenantFixture, upload_id: uuid.UUID) -> tuple[str, int]:
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        row = await conn.fetchrow("SELECT status, version FROM uploads WHERE upload_id = $1", upload_id)
    return row["status"], row["version"]


@dataclass
class Race:
    client: httpx.AsyncClient
    app: Starlette
    tenant: TenantFixture
    pool: asyncpg.Pool
    settings: Settings
    cache: StatusCache
    recorder: RecordingPublisher
    applier: EventApplier

    async def run(self, order: list[int], *, concurrent: bool) -> list[tuple[str, str | None]]:
        """One upload, the four writers in ``order`` (all at once, or one after the other);
        checks the invariants and returns the published (status, reason) changes."""
        t, h = self.tenant, self.tenant.auth("field_worker")
        mp = await create_multipart(self.client, h, t.projects[0])
        etag = await put_part(await sign_part(self.client, h, mp, 1), b"z" * 2000)
        upload_id = uuid.UUID(mp.id)
        async with tenant_transaction(self.pool, t.tenant_id) as conn:  # idle long enough to sweep
            await conn.execute(
                "UPDATE uploads SET last_activity_at = now() - interval '30 days' WHERE upload_id = $1",
                upload_id,
            )
        _, v0 = await _version(self.pool, t, upload_id)
        self.recorder.published.clear()
        before = metric_counts()
        ref = ObjectRef(
            bucket=self.settings.bucket,
            key=mp.key,
            size=2000,
            etag=etag.strip('"'),
            version_id=None,
            sequencer="0A",
            tenant_id=t.tenant_id,
            project_id=t.projects[0],
            upload_id=upload_id,
        )
        ready = Event.new(
            EventType.PROCESSING_COMPLETED,
            tenant_id=t.tenant_id,
            project_id=t.projects[0],
            upload_id=upload_id,
            user_id=t.users["field_worker"],
            status=UploadStatus.READY,
        )
        processor_events: list[Event] = []
        writers: list[Callable[[], Awaitable[Any]]] = [
            lambda: api_complete(self.client, h, mp, etag),
            lambda: processor_dead_letter(self.pool, ref, processor_events),
            lambda: self.applier.apply(ready),
            lambda: sweep_once(self.pool, self.app.state.s3, self.settings, self.cache, self.recorder),
        ]
        if concurrent:
            await asyncio.gather(*(writers[i]() for i in order))
        else:
            for i in order:
                await writers[i]()
        for event in processor_events:  # what SNS delivers to the events consumer afterwards
            await self.applier.apply(event)

        status, version = await _version(self.pool, t, upload_id)
        changes = published_for(self.recorder.published, mp.id)  # in this window: status changes only
        statuses = [d["status"] for d in changes]
        assert [d["version"] for d in changes] == list(range(v0 + 1, version + 1)), statuses
        assert len(set(statuses)) == len(statuses)  # no change won (or was published) twice
        prior = "uploading"
        for nxt in statuses:
            assert can_transition(prior, nxt), (prior, nxt, statuses)  # never backwards
            prior = nxt
        assert statuses and status == statuses[-1] == max(statuses, key=rank)
        published = Counter((d["status"], d["reason"] or "") for _, d in self.recorder.published)
        counted = metric_counts() - before
        assert +counted == +published, (counted, published)
        cached = await self.cache.get_raw(t.tenant_id, upload_id)
        assert cached is not None and b'"status":"%s"' % status.encode() in cached
        return [(d["status"], d["reason"]) for d in changes]


@pytest.fixture
def race(
    client: httpx.AsyncClient,
    app: Starlette,
    tenant: TenantFixture,
    pool: asyncpg.Pool,
    redis: Any,
    settings: Settings,
) -> Race:
    recorder = RecordingPublisher()
    app.state.publisher = recorder  # what the API's after-change step publishes to
    cache = StatusCache(redis, 30)
    return Race(client, app, tenant, pool, settings, cache, recorder, EventApplier(pool, cache, recorder))


async def test_concurrent_writers_highest_rank_wins_each_change_counted_and_published_once(
    race: Race,
) -> None:
    """The API (complete → uploaded), a processor (dead-letter → failed/processing_failed),
    the events consumer (an out-of-order ``processing.completed`` → ready) and the stale
    sweeper (→ failed/expired) race one upload, many times in shuffled orders. Whatever the
    interleaving: the statuses published rise in rank, the final status is the highest of
    them, every version bump is exactly one published change, and the metric counted
    exactly the changes published."""
    rng = random.Random(12)
    for _ in range(10):
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        await race.run(order, concurrent=True)


async def test_every_order_of_the_four_writers(race: Race) -> None:
    """The same writers one after the other, in all 24 orders: whoever comes first decides,
    later moves are refused unless forward, and the invariants hold for each."""
    outcomes = {
        tuple(order): await race.run(list(order), concurrent=False) for order in permutations(range(4))
    }
    api, processor, consumer, sweeper = range(4)
    assert outcomes[(sweeper, api, processor, consumer)] == [("failed", "expired")]
    assert outcomes[(processor, sweeper, api, consumer)] == [("failed", "processing_failed")]
    assert outcomes[(api, consumer, processor, sweeper)] == [("uploaded", None), ("ready", None)]
    assert outcomes[(consumer, api, processor, sweeper)] == [("ready", None)]
    assert outcomes[(api, processor, consumer, sweeper)] == [
        ("uploaded", None),
        ("failed", "processing_failed"),
    ]


async def test_cache_write_through_never_replaces_a_newer_version(redis: Any) -> None:
    """Racing writers reach Redis in any order (the API after its commit, the consumer inside
    its transaction, a polling read-through): the newest version stays cached."""
    cache = StatusCache(redis, 30)
    tenant_id, upload_id = uuid.uuid4(), str(uuid.uuid4())
    await cache.put(
        tenant_id, {"id": upload_id, "status": "ready", "version": 5, "metadata": {"version": 99}}
    )
    await cache.put(tenant_id, {"id": upload_id, "status": "uploaded", "version": 3, "metadata": {}})
    cached = await cache.get_raw(tenant_id, upload_id)
    assert cached is not None and b'"status":"ready"' in cached
    await cache.put(
        tenant_id, {"id": upload_id, "status": "ready", "version": 5, "derivatives": ["thumb-200"]}
    )
    await cache.put(tenant_id, {"id": upload_id, "status": "deleted", "version": 6})
    cached = await cache.get_raw(tenant_id, upload_id)
    assert cached is not None and b'"status":"deleted"' in cached


async def test_applier_counts_a_processor_change_once_and_drops_what_a_deletion_made_stale(
    pool: asyncpg.Pool, redis: Any, tenant: TenantFixture
) -> None:
    """The processors move the status themselves and announce it: the consumer publishes and
    counts the announcement once (redeliveries are duplicates), relays ``upload.completed``
    without counting it, and drops an event for an upload deleted since."""
    recorder = RecordingPublisher()
    applier = EventApplier(pool, StatusCache(redis, 30), recorder)
    upload_id = await insert_upload(pool, tenant, "processing")
    async with tenant_transaction(pool, tenant.tenant_id) as conn:  # what the reducer does
        assert await transition(conn, upload_id, UploadStatus.READY) is not None

    def event(kind: EventType, status: UploadStatus) -> Event:
        return Event.new(
            kind,
            tenant_id=tenant.tenant_id,
            project_id=tenant.projects[0],
            upload_id=upload_id,
            user_id=tenant.users["field_worker"],
            status=status,
        )

    before = metric_counts()
    completed, ready = (
        event(EventType.UPLOAD_COMPLETED, UploadStatus.READY),
        event(EventType.PROCESSING_COMPLETED, UploadStatus.READY),
    )
    assert (await applier.apply(completed) or {})["status"] == "ready"  # relayed
    assert (await applier.apply(ready) or {})["status"] == "ready"  # the announcement
    assert await applier.apply(ready) is None  # a redelivery
    assert (metric_counts() - before) == Counter({("ready", ""): 1})
    assert [e.type for e, _ in recorder.published] == [
        EventType.UPLOAD_COMPLETED,
        EventType.PROCESSING_COMPLETED,
    ]

    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        assert await transition(conn, upload_id, UploadStatus.DELETED) is not None
    late = event(EventType.PROCESSING_COMPLETED, UploadStatus.READY)
    assert await applier.apply(late) is None
    assert len(recorder.published) == 2


async def test_no_queue_message_can_delete_an_upload(
    pool: asyncpg.Pool, redis: Any, tenant: TenantFixture
) -> None:
    """The attack: a forged ``deleted`` event on the events queue. Only the DELETE route
    (which also removes the objects) deletes."""
    applier = EventApplier(pool, StatusCache(redis, 30), RecordingPublisher())
    upload_id = await insert_upload(pool, tenant, "ready")
    forged = Event.new(
        EventType.UPLOAD_DELETED,
        tenant_id=tenant.tenant_id,
        project_id=tenant.projects[0],
        upload_id=upload_id,
        user_id=tenant.users["field_worker"],
        status=UploadStatus.DELETED,
    )
    assert await applier.apply(forged) is None
    assert (await _version(pool, tenant, upload_id))[0] == "ready"
