"""PostgreSQL down for longer than visibility timeout × maxReceiveCount, with messages
queued, under each of the three SQS loops — the server's events consumer, the push
consumer and the local Lambda runtime (``buildpeer worker``). Both queue settings are
shortened here (visibility 2 s, two receives): a consumer that kept receiving on a timer
would have dead-lettered everything within seconds. The one queue consumer holds instead:
nothing is dead-lettered, and each message is processed exactly once after the restart
(the events applied once, each push sent once at the FCM fake, each step run once)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import asyncpg
import pytest

from core.db import create_pool, ping, tenant_transaction
from core.events import Event, EventType
from core.publish import MemoryPublisher
from core.resources import PROCESSORS
from core.settings import Settings
from core.status import UploadStatus
from devstack.aws import client as aws_client
from devstack.clamd import EmbeddedClamd
from devstack.fcm_emulator import FcmEmulator
from server.realtime.consumer import EventConsumer
from server.status_cache import StatusCache
from server.uploads.event_applier import EventApplier
from subscribers.push.consumer import PushConsumer
from subscribers.push.fcm import FcmClient
from subscribers.push.notifier import PushNotifier
from tests.conftest import Stack, TenantFixture, insert_upload, running_worker
from tests.notifications.seed import add_device, event_for, seed_upload
from tests.pipeline import samples
from tests.pipeline.helpers import create_upload, isolated_stack, steps, upload_row
from tests.resilience.conftest import isolated_settings, queue_counts, sns_publish, status_event

VISIBILITY = 2
MAX_RECEIVES = 2
# Well past visibility × receives (4 s): long enough for three redeliveries to dead-letter.
DOWN_SECONDS = 3 * VISIBILITY * MAX_RECEIVES
MESSAGES = 3


def shorten(settings: Settings, queue_url: str) -> str:
    """Visibility and maxReceiveCount of a queue cut down; returns its dead-letter queue."""
    sqs = aws_client(settings, "sqs")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY),
            "RedrivePolicy": json.dumps({**policy, "maxReceiveCount": MAX_RECEIVES}),
        },
    )
    dlq_name = policy["deadLetterTargetArn"].rsplit(":", 1)[-1]
    return str(sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"])


@contextmanager
def port_kept(port: int) -> Iterator[None]:
    """Keep PostgreSQL's port from being handed to anyone else while it is down (bound, not
    listening: connecting is still refused), so the restart gets it back — on a machine
    shared with other test sessions, a free port is soon someone else's."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        yield


@dataclass
class Loop:
    """One SQS loop under test: its queues, what to queue while the database is down,
    whether it noticed, and what "processed exactly once" means for it."""

    settings: Settings
    queues: dict[str, str]  # queue url → its dead-letter queue url
    enqueue: Callable[[], Awaitable[None]]
    tried: Callable[[], bool]  # took a message, failed on the database, held
    done_once: Callable[[asyncpg.Pool], Awaitable[bool]]  # all processed, each once
    dead_letters_handled: Callable[[], int] = lambda: 0


def _sqs_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "region_name": settings.aws_region,
        "endpoint_url": settings.aws_endpoint_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


@asynccontextmanager
async def events_loop(stack: Stack, pool: asyncpg.Pool, redis: Any, t: TenantFixture) -> AsyncIterator[Loop]:
    settings, provisioned = await asyncio.to_thread(isolated_settings, stack.settings, "bpout-events")
    url = provisioned.queue_urls["events"]
    dlq = await asyncio.to_thread(shorten, settings, url)
    uploads = [await insert_upload(pool, t) for _ in range(MESSAGES)]
    events = [status_event(t, u, UploadStatus.UPLOADED) for u in uploads]
    publisher = MemoryPublisher()
    own = await create_pool(settings.database_url or "", min_size=0, max_size=4)
    async with aioboto3.Session().client("sqs", **_sqs_kwargs(settings)) as sqs:
        consumer = EventConsumer(
            sqs=sqs,
            queue_name=f"{settings.stack}-events",
            applier=EventApplier(own, StatusCache(redis), publisher),
            wait_seconds=1,
            stop_timeout=30,
        )

        async def enqueue() -> None:
            for event in events:
                await asyncio.to_thread(sns_publish, settings, provisioned, event)

        async def done_once(check: asyncpg.Pool) -> bool:
            async with tenant_transaction(check, t.tenant_id) as conn:
                rows = await conn.fetch(
                    "SELECT status, version FROM uploads WHERE upload_id = ANY($1::uuid[])", uploads
                )
            assert len(rows) == MESSAGES, f"{len(rows)} of {MESSAGES} upload rows after the restart"
            if any(r["status"] != "uploaded" for r in rows):
                return False
            assert {r["version"] for r in rows} == {2}  # one transition each
            assert sorted(str(e.id) for e in publisher.events) == sorted(str(e.id) for e in events)
            return True

        await consumer.start()
        try:
            yield Loop(settings, {url: dlq}, enqueue, lambda: consumer.stats.retried > 0, done_once)
        finally:
            await consumer.stop()
            await own.close()
    assert consumer.error is None


@asynccontextmanager
async def push_loop(stack: Stack, pool: asyncpg.Pool, t: TenantFixture, tmp: Path) -> AsyncIterator[Loop]:
    settings, provisioned = await asyncio.to_thread(isolated_settings, stack.settings, "bpout-push")
    url = provisioned.queue_urls["push"]
    dlq = await asyncio.to_thread(shorten, settings, url)
    fcm = FcmEmulator(tmp / "push", project_id="bp-test").start()
    settings = settings.replace(fcm_credentials=str(fcm.credentials_path), fcm_endpoint=fcm.url)
    fw = t.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw)
    events: list[Event] = []
    for _ in range(MESSAGES):
        upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
        events.append(
            event_for(
                EventType.UPLOAD_FAILED,
                t.tenant_id,
                t.projects[0],
                upload,
                fw,
                UploadStatus.FAILED,
                "corrupt",
            )
        )
    own = await create_pool(settings.database_url or "", min_size=0, max_size=4)
    assert settings.fcm_credentials
    client = FcmClient(settings.fcm_credentials, endpoint=settings.fcm_endpoint, max_attempts=2)
    await client.start()
    try:
        async with aioboto3.Session().client("sqs", **_sqs_kwargs(settings)) as sqs:
            consumer = PushConsumer(
                sqs,
                PushNotifier(own, client, settings),
                queue_name=PushConsumer.queue_for(settings.stack),
                wait_seconds=1,
                probe=lambda: ping(own),
            )

            async def enqueue() -> None:
                for event in events:
                    await asyncio.to_thread(sns_publish, settings, provisioned, event)

            async def done_once(check: asyncpg.Pool) -> bool:
                sent = [m["data"]["upload_id"] for m in fcm.messages_to(token)]
                if len(sent) < MESSAGES:
                    return False
                assert sorted(sent) == sorted(str(e.upload_id) for e in events)  # each push once
                return True

            await consumer.start()
            try:
                yield Loop(settings, {url: dlq}, enqueue, lambda: consumer.stats.retried > 0, done_once)
            finally:
                await consumer.stop()
        assert consumer.error is None
    finally:
        await client.close()
        await own.close()
        fcm.stop()


@asynccontextmanager
async def worker_loop(
    stack: Stack, pool: asyncpg.Pool, t: TenantFixture, clamd: EmbeddedClamd
) -> AsyncIterator[Loop]:
    p = await asyncio.to_thread(
        isolated_stack, stack, "bpout-work", clamd_url=clamd.url, visibility=VISIBILITY
    )
    queues = {}
    for spec in PROCESSORS:
        url = p.provisioned.queue_urls[spec.name]
        queues[url] = await asyncio.to_thread(shorten, p.settings, url)
    refs = [
        await create_upload(
            pool,
            p,
            t,
            file_name=f"foto-{i}.jpg",
            declared_type="image/jpeg",
            data=samples.rotated_jpeg_with_gps(),
            put=False,
        )
        for i in range(MESSAGES)
    ]

    async def enqueue() -> None:  # the objects land while the database is down
        for ref in refs:
            await asyncio.to_thread(
                p.s3.put_object, Bucket=p.settings.bucket, Key=ref.key, Body=samples.rotated_jpeg_with_gps()
            )

    async def done_once(check: asyncpg.Pool) -> bool:
        for ref in refs:
            if (await upload_row(check, ref))["status"] not in {"ready", "failed", "quarantined"}:
                return False
            # A photo is `ready` without the document step, whose (skipping) message may still
            # be held in its queue after the outage: wait until every queue has had its say.
            if set(await steps(check, ref)) != {"scan", "metadata", "image", "document"}:
                return False
        for ref in refs:
            assert (await upload_row(check, ref))["status"] == "ready"
            # each step claimed once: no receive during the outage got as far as running it twice
            assert {name: s["attempts"] for name, s in (await steps(check, ref)).items()} == {
                "scan": 1,
                "metadata": 1,
                "image": 1,
                "document": 1,
            }
        return True

    async with running_worker(p.settings) as worker:
        yield Loop(
            p.settings,
            queues,
            enqueue,
            lambda: worker.stats["scan"].failed > 0 and worker.consumers["scan"].stats.retried > 0,
            done_once,
            dead_letters_handled=lambda: sum(worker.stats[f"{s.name}-dlq"].messages for s in PROCESSORS),
        )


@pytest.mark.parametrize("name", ["events", "push", "worker"])
async def test_postgres_down_past_the_redrive_dead_letters_nothing(
    name: str,
    stack: Stack,
    pool: asyncpg.Pool,
    redis: Any,
    make_tenant: Any,
    clamd: EmbeddedClamd,
    tmp_path: Path,
) -> None:
    t = await make_tenant()
    loops = {
        "events": lambda: events_loop(stack, pool, redis, t),
        "push": lambda: push_loop(stack, pool, t, tmp_path),
        "worker": lambda: worker_loop(stack, pool, t, clamd),
    }
    async with loops[name]() as loop:
        stack.pg.stop()
        down_at = time.monotonic()
        try:
            with port_kept(stack.pg.port):
                await loop.enqueue()
                deadline = time.monotonic() + 60
                while not loop.tried():
                    assert time.monotonic() < deadline, "the consumer never tried the queued messages"
                    await asyncio.sleep(0.2)
                while time.monotonic() - down_at < DOWN_SECONDS:
                    for url, dlq in loop.queues.items():
                        dead = await asyncio.to_thread(queue_counts, loop.settings, dlq)
                        elapsed = time.monotonic() - down_at
                        assert dead == (0, 0), f"dead-lettered after {elapsed:.0f}s down: {url}"
                    assert loop.dead_letters_handled() == 0
                    await asyncio.sleep(0.5)
        finally:
            stack.pg.start()

        check = await create_pool(loop.settings.database_url or "", min_size=1, max_size=2)
        try:
            deadline = time.monotonic() + 90
            while not await loop.done_once(check):
                assert time.monotonic() < deadline, "not all processed after the restart"
                await asyncio.sleep(0.3)
            for url, dlq in loop.queues.items():  # deleted once processed; nothing dead-lettered
                for _ in range(100):
                    if await asyncio.to_thread(queue_counts, loop.settings, url) == (0, 0):
                        break
                    await asyncio.sleep(0.2)
                assert await asyncio.to_thread(queue_counts, loop.settings, url) == (0, 0), url
                assert await asyncio.to_thread(queue_counts, loop.settings, dlq) == (0, 0), dlq
            assert loop.dead_letters_handled() == 0
            assert await loop.done_once(check)  # and still once: no late redelivery acted again
        finally:
            await check.close()
