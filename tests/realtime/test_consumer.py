"""The events consumer's record logic against real PostgreSQL and Redis, and its queue
handling against the moto SQS server."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import aioboto3
import orjson
import pytest

from core.db import tenant_transaction
from core.envelope import unwrap_sns as unwrap_body
from core.events import Event, EventType
from core.publish import MemoryPublisher
from core.status import UploadStatus
from server.app import aws_client_kwargs
from server.realtime.broker import BrokerUnavailable
from server.realtime.consumer import EventConsumer
from server.status_cache import StatusCache
from server.uploads.event_applier import EventApplier
from tests.conftest import insert_upload as make_upload


class RecordingPublisher(MemoryPublisher):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.documents: list[dict[str, Any]] = []
        self.fail = fail

    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:  # type: ignore[override]
        if self.fail:
            raise BrokerUnavailable("down")
        self.events.append(event)
        self.documents.append(upload or {})


def make_event(t: Any, upload_id: uuid.UUID, status: UploadStatus, **data: Any) -> Event:
    return Event.new(
        EventType.UPLOAD_FAILED if status is UploadStatus.FAILED else EventType.PROCESSING_COMPLETED,
        tenant_id=t.tenant_id,
        project_id=t.projects[0],
        upload_id=upload_id,
        user_id=t.users["field_worker"],
        status=status,
        data=data,
    )


async def status_of(pool: Any, t: Any, upload_id: uuid.UUID) -> tuple[str, int, str | None]:
    async with tenant_transaction(pool, t.tenant_id) as conn:
        row = await conn.fetchrow(
            "SELECT status, version, reason_code FROM uploads WHERE upload_id = $1", upload_id
        )
    return row["status"], row["version"], row["reason_code"]


def test_unwrap_raw_and_envelope() -> None:
    raw = '{"version":1}'
    assert unwrap_body(raw) == raw
    envelope = orjson.dumps({"Type": "Notification", "Message": raw, "TopicArn": "arn"}).decode()
    assert unwrap_body(envelope) == raw
    assert unwrap_body("not json") == "not json"


async def test_applies_monotonically_once_and_writes_through(
    pool: Any, redis: Any, make_tenant: Any, settings: Any
) -> None:
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    publisher = RecordingPublisher()
    cache = StatusCache(redis, 30)
    consumer = EventConsumer(sqs=None, queue_name="unused", applier=EventApplier(pool, cache, publisher))

    processing = make_event(t, upload_id, UploadStatus.PROCESSING)
    assert await consumer.handle(processing.to_json().decode()) == (True, "applied")
    assert await consumer.handle(processing.to_json().decode()) == (True, "skipped")  # same id again
    stale = make_event(t, upload_id, UploadStatus.UPLOADED)
    assert await consumer.handle(stale.to_json().decode()) == (True, "skipped")  # never backwards
    failed = make_event(t, upload_id, UploadStatus.FAILED, reason_code="corrupt")
    envelope = orjson.dumps({"Type": "Notification", "Message": failed.to_json().decode()}).decode()
    assert await consumer.handle(envelope) == (True, "applied")
    assert await status_of(pool, t, upload_id) == ("failed", 3, "corrupt")
    assert [d["status"] for d in publisher.documents] == ["processing", "failed"]
    cached = orjson.loads(await cache.get_raw(t.tenant_id, upload_id))
    assert cached["status"] == "failed" and cached["reason"] == "corrupt" and cached["version"] == 3


async def test_bad_messages_are_left_for_the_dead_letter_queue(
    pool: Any, redis: Any, make_tenant: Any
) -> None:
    t, other = await make_tenant(), await make_tenant()
    upload_id = await make_upload(pool, t)
    consumer = EventConsumer(
        sqs=None, queue_name="unused", applier=EventApplier(pool, StatusCache(redis), RecordingPublisher())
    )
    assert await consumer.handle("{broken") == (False, "invalid")
    assert await consumer.handle('{"version": 1, "type": "upload.completed"}') == (False, "invalid")
    # another tenant's id on this tenant's upload: the upload does not exist there
    forged = make_event(t, upload_id, UploadStatus.READY)
    forged = dataclasses.replace(forged, tenant_id=other.tenant_id)
    assert await consumer.handle(forged.to_json().decode()) == (False, "unknown_upload")
    assert (await status_of(pool, t, upload_id))[0] == "uploading"


async def test_failed_publish_rolls_back_so_the_retry_applies(
    pool: Any, redis: Any, make_tenant: Any
) -> None:
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    down = EventConsumer(
        sqs=None,
        queue_name="unused",
        applier=EventApplier(pool, StatusCache(redis), RecordingPublisher(fail=True)),
    )
    event = make_event(t, upload_id, UploadStatus.SCANNING)
    assert await down.handle(event.to_json().decode()) == (False, "retry")
    assert (await status_of(pool, t, upload_id))[0] == "uploading"
    up = EventConsumer(
        sqs=None, queue_name="unused", applier=EventApplier(pool, StatusCache(redis), RecordingPublisher())
    )
    assert await up.handle(event.to_json().decode()) == (True, "applied")
    assert (await status_of(pool, t, upload_id))[0] == "scanning"


async def test_queue_loop_deletes_applied_and_keeps_invalid(
    stack: Any, pool: Any, redis: Any, make_tenant: Any, settings: Any
) -> None:
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    queue_name = f"{settings.stack}-rt-test-{uuid.uuid4().hex[:6]}"
    session = aioboto3.Session()
    async with session.client("sqs", **aws_client_kwargs(settings)) as sqs:
        url = (await sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "1"}))[
            "QueueUrl"
        ]
        publisher = RecordingPublisher()
        consumer = EventConsumer(
            sqs=sqs,
            queue_name=queue_name,
            applier=EventApplier(pool, StatusCache(redis), publisher),
            wait_seconds=1,
            concurrency=4,
        )
        for status in (UploadStatus.UPLOADED,):
            await sqs.send_message(
                QueueUrl=url, MessageBody=make_event(t, upload_id, status).to_json().decode()
            )
        await sqs.send_message(QueueUrl=url, MessageBody="definitely not an event")
        await consumer.start()
        try:
            for _ in range(100):
                if publisher.events and consumer.handled >= 3:  # the invalid one came back at least once
                    break
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()
        assert [e.status for e in publisher.events] == [UploadStatus.UPLOADED]
        attributes = await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        left = sum(int(v) for v in attributes["Attributes"].values())
        assert left == 1  # only the invalid message remains, for the dead-letter queue
        await sqs.delete_queue(QueueUrl=url)


@pytest.mark.parametrize("body", ["", "null", "[]", '{"Type":"Notification","Message":42}'])
async def test_odd_bodies_never_raise(body: str, pool: Any, redis: Any) -> None:
    consumer = EventConsumer(
        sqs=None, queue_name="unused", applier=EventApplier(pool, StatusCache(redis), RecordingPublisher())
    )
    assert (await consumer.handle(body))[0] is False
