"""PostgreSQL restarted while status events are queued (issue 8): the server's events
consumer leaves every event in SQS while the database is down — not deleted, not
dead-lettered, nothing crashes — and applies each exactly once when it returns."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson
import pytest

from core.db import create_pool, tenant_transaction
from core.status import UploadStatus
from devstack.aws import client as aws_client
from server.status_cache import StatusCache
from tests.conftest import Stack, insert_upload
from tests.resilience.conftest import (
    isolated_settings,
    poll,
    queue_counts,
    sns_publish,
    status_event,
)

UPLOADS = 4
# Longer than the consumer's three 2^n-second retries (2 + 4 + 8 s) that a message of a
# queue with maxReceiveCount 3 survives: a real restart or failover often takes this long.
DOWN_SECONDS = 18


async def test_events_queued_while_postgres_is_down_are_applied_once_afterwards(
    stack: Stack, live_server: Any, make_tenant: Any, pool: Any, redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.realtime.consumer")
    settings, provisioned = await asyncio.to_thread(isolated_settings, stack.settings, "bpfault-pg")
    events_url = provisioned.queue_urls["events"]
    dlq_url = aws_client(settings, "sqs").get_queue_url(QueueName="bpfault-pg-events-dlq")["QueueUrl"]
    t = await make_tenant()
    uploads = [await insert_upload(pool, t) for _ in range(UPLOADS)]
    server = live_server(settings_override=settings)

    stack.pg.stop()
    down_at = time.monotonic()
    try:
        events = [status_event(t, u, UploadStatus.UPLOADED) for u in uploads]
        for event in events:
            await asyncio.to_thread(sns_publish, settings, provisioned, event)
        # The consumer takes them, fails on the database, and leaves them in the queue.
        await asyncio.to_thread(
            poll,
            lambda: (
                sum(queue_counts(settings, events_url)) == UPLOADS
                and "not applied, will retry" in caplog.text
            ),
            15,
            "consumer tried the queued events",
        )
        while time.monotonic() - down_at < DOWN_SECONDS:
            counts = await asyncio.to_thread(queue_counts, settings, events_url)
            dead = await asyncio.to_thread(queue_counts, settings, dlq_url)
            elapsed = time.monotonic() - down_at
            assert (sum(counts), dead) == (UPLOADS, (0, 0)), f"after {elapsed:.0f}s down: {counts} {dead}"
            health = await asyncio.to_thread(httpx.get, f"{server.url}/health", timeout=10)
            assert health.status_code == 503  # the server is up and says what is down
            await asyncio.sleep(1)
        # It waits for the database with a growing delay; it does not spin.
        assert 1 <= caplog.text.count("events: holding queued messages, a dependency is still down") <= 12
    finally:
        stack.pg.start()

    async def applied() -> list[Any]:
        async with tenant_transaction(check_pool, t.tenant_id) as conn:
            return list(
                await conn.fetch(
                    "SELECT upload_id, status, version FROM uploads WHERE upload_id = ANY($1::uuid[])",
                    uploads,
                )
            )

    check_pool = await create_pool(settings.database_url or "", min_size=1, max_size=2)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                rows = await applied()
                if all(r["status"] == "uploaded" for r in rows):
                    break
            except Exception:
                rows = []
            assert time.monotonic() < deadline, f"events not applied after the restart: {rows}"
            await asyncio.sleep(0.3)
        assert {r["version"] for r in rows} == {2}  # one transition each: applied once
        async with tenant_transaction(check_pool, t.tenant_id) as conn:
            dedupe = await conn.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = 'hub' AND event_id = ANY($1::uuid[])",
                [e.id for e in events],
            )
        assert dedupe == UPLOADS
    finally:
        await check_pool.close()
    cache = StatusCache(redis)
    for upload_id in uploads:
        cached = await cache.get_raw(t.tenant_id, upload_id)
        assert cached is not None and orjson.loads(cached)["status"] == "uploaded"
    # Deleted from the queue once applied; nothing went to the dead-letter queue.
    await asyncio.to_thread(poll, lambda: queue_counts(settings, events_url) == (0, 0), 15, "queue drained")
    assert await asyncio.to_thread(queue_counts, settings, dlq_url) == (0, 0)
