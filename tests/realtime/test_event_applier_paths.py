"""The events applier's paths since dedupe and the move are one statement (and the row is
read locked only when nothing moved): another project's id moves nothing, an announcement of
a status the row has is relayed with its derivatives once ready — real PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from core.db import tenant_transaction
from core.status import UploadStatus
from server.realtime.consumer import EventConsumer
from server.status_cache import StatusCache
from server.uploads.event_applier import EventApplier
from tests.conftest import insert_upload as make_upload
from tests.realtime.test_consumer import RecordingPublisher, make_event, status_of


async def test_an_event_naming_another_project_moves_nothing(pool: Any, redis: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    publisher = RecordingPublisher()
    consumer = EventConsumer(
        sqs=None, queue_name="unused", applier=EventApplier(pool, StatusCache(redis), publisher)
    )
    event = dataclasses.replace(make_event(t, upload_id, UploadStatus.UPLOADED), project_id=uuid.uuid4())
    assert await consumer.handle(event.to_json().decode()) == (False, "unknown_upload")
    assert (await status_of(pool, t, upload_id))[0] == "uploading"
    assert publisher.documents == []
    right = dataclasses.replace(event, project_id=t.projects[0])  # same id: the dedupe was rolled back
    assert await consumer.handle(right.to_json().decode()) == (True, "applied")
    assert (await status_of(pool, t, upload_id))[0] == "uploaded"


async def test_an_announced_ready_is_relayed_once_with_its_derivatives(
    pool: Any, redis: Any, make_tenant: Any
) -> None:
    t = await make_tenant()
    upload_id = await make_upload(pool, t, "processing")
    async with tenant_transaction(pool, t.tenant_id) as conn:  # what the processor does itself
        for kind in ("thumb-800", "thumb-200"):
            await conn.execute(
                "INSERT INTO derivatives (tenant_id, upload_id, kind, s3_key, mime_type) "
                "VALUES ($1, $2, $3, $4, 'image/webp')",
                t.tenant_id,
                upload_id,
                kind,
                f"d/{upload_id}/{kind}",
            )
        await conn.execute(
            "UPDATE uploads SET status = 'ready', version = version + 1 WHERE upload_id = $1", upload_id
        )
    publisher = RecordingPublisher()
    consumer = EventConsumer(
        sqs=None, queue_name="unused", applier=EventApplier(pool, StatusCache(redis), publisher)
    )
    ready = make_event(t, upload_id, UploadStatus.READY)
    assert await consumer.handle(ready.to_json().decode()) == (True, "applied")
    assert await consumer.handle(ready.to_json().decode()) == (True, "skipped")
    assert [(d["status"], d["derivatives"]) for d in publisher.documents] == [
        ("ready", ["thumb-200", "thumb-800"])
    ]
    assert (await status_of(pool, t, upload_id))[0] == "ready"
