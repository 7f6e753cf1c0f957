"""The stock ``centrifuge`` npm SDK (Node, real socket, real uvicorn server): status
publications end to end from SNS through the events consumer, recovery after a
disconnect, and ``recovered: false`` once history no longer covers the gap."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from core.db import tenant_transaction
from core.events import Event, EventType
from core.status import UploadStatus
from devstack.aws import client as aws_client
from server.realtime.broker import Publication
from server.realtime.redis_broker import RedisBroker
from server.status_cache import StatusCache
from tests.conftest import insert_upload as make_upload
from tests.realtime.conftest import publish
from tests.realtime.jsclient import JsClient


def sns_publish(stack: Any, event: Event) -> None:
    topic = {"upload.completed": "upload-completed", "upload.failed": "upload-failed"}.get(
        event.type.value, "processing-completed"
    )
    aws_client(stack.settings, "sns").publish(
        TopicArn=stack.provisioned.topic_arns[topic], Message=event.to_json().decode()
    )


async def test_sdk_receives_upload_status_end_to_end(
    stack: Any, rt_server: Any, make_tenant: Any, pool: Any, redis: Any
) -> None:
    server = rt_server()
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    js = await JsClient.start(server.ws_url, t.tokens["field_worker"])
    try:
        await js.send("subscribe", channel=f"project:{t.projects[0]}")
        await js.send("connect")
        await js.wait_for("connected")
        subscribed = await js.wait_for("subscribed")
        assert subscribed["recoverable"] is True and subscribed["positioned"] is True

        def event(etype: EventType, status: UploadStatus) -> Event:
            return Event.new(
                etype,
                tenant_id=t.tenant_id,
                project_id=t.projects[0],
                upload_id=upload_id,
                user_id=t.users["field_worker"],
                status=status,
            )

        first = event(EventType.UPLOAD_COMPLETED, UploadStatus.UPLOADED)
        pubs = []
        # The pipeline's steps happen one after the other; SQS may still redeliver.
        for step in (first, event(EventType.PROCESSING_COMPLETED, UploadStatus.PROCESSING)):
            await asyncio.to_thread(sns_publish, stack, step)
            pubs += await js.collect("publication", 1, wait=30)
        await asyncio.to_thread(sns_publish, stack, first)  # redelivery of an applied event id
        await asyncio.to_thread(sns_publish, stack, event(EventType.PROCESSING_COMPLETED, UploadStatus.READY))
        pubs += await js.collect("publication", 1, wait=30)
        assert [p["data"]["upload"]["status"] for p in pubs] == ["uploaded", "processing", "ready"]
        assert all(p["data"]["upload_id"] == str(upload_id) for p in pubs)
        assert [p["data"]["upload"]["version"] for p in pubs] == [2, 3, 4]
        offsets = [int(p["offset"]) for p in pubs]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3
        # a late, stale event (scanning after ready) changes nothing and publishes nothing
        await asyncio.to_thread(
            sns_publish, stack, event(EventType.PROCESSING_COMPLETED, UploadStatus.SCANNING)
        )

        async with tenant_transaction(pool, t.tenant_id) as conn:
            row = await conn.fetchrow("SELECT status, version FROM uploads WHERE upload_id = $1", upload_id)
        assert row["status"] == "ready" and row["version"] == 4
        cached = await StatusCache(redis).get_raw(t.tenant_id, upload_id)
        assert cached is not None and orjson.loads(cached)["status"] == "ready"
        with_nothing_more = asyncio.create_task(js.wait_for("publication", wait=3))
        try:
            await with_nothing_more
            raise AssertionError("a stale event was published")
        except TimeoutError:
            pass
    finally:
        await js.stop()


async def test_sdk_recovers_missed_publications_then_reports_unrecoverable_gap(
    rt_server: Any, make_tenant: Any, channel_broker: Any, stack: Any
) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    js = await JsClient.start(server.ws_url, t.tokens["investor"])
    try:
        await js.send("subscribe", channel=channel)
        await js.send("connect")
        await js.wait_for("subscribed")
        await publish(channel_broker, t.tenant_id, channel, b'{"n":0}')
        (first,) = await js.collect("publication", 1)

        await js.send("disconnect")
        await js.wait_for("disconnected")
        missed = [
            await publish(channel_broker, t.tenant_id, channel, orjson.dumps({"n": i})) for i in range(1, 21)
        ]
        await js.send("connect")
        subscribed = await js.wait_for("subscribed")
        assert subscribed["wasRecovering"] is True and subscribed["recovered"] is True
        pubs = await js.collect("publication", 20)
        assert [int(p["offset"]) for p in pubs] == missed  # all 20, in order, no duplicates
        assert [p["data"]["n"] for p in pubs] == list(range(1, 21))
        assert int(first["offset"]) == missed[0] - 1

        await js.send("disconnect")
        await js.wait_for("disconnected")
        trimming = RedisBroker(stack.settings.redis_url, history_size=10, history_ttl=600)

        def ignore(channel: str, pub: Publication) -> None:
            return None

        async def nothing() -> None:
            return None

        await trimming.start(ignore, nothing)
        try:
            for i in range(300):  # MAXLEN ~ 10: whole stream nodes past the gap are trimmed
                await publish(trimming, t.tenant_id, channel, orjson.dumps({"n": 100 + i}))
        finally:
            await trimming.stop()
        await js.send("connect")
        subscribed = await js.wait_for("subscribed")
        assert subscribed["wasRecovering"] is True and subscribed["recovered"] is False
        # live again from the current position
        latest = await publish(channel_broker, t.tenant_id, channel, b'{"n":"live"}')
        (live,) = await js.collect("publication", 1)
        assert int(live["offset"]) == latest and live["data"] == {"n": "live"}
    finally:
        await js.stop()


async def test_sdk_permission_denied(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t, other = await make_tenant(), await make_tenant()
    js = await JsClient.start(server.ws_url, t.tokens["investor"])
    try:
        await js.send("subscribe", channel=f"project:{t.projects[1]}")
        await js.send("subscribe", channel=f"project:{other.projects[0]}")
        await js.send("connect")
        errors = [await js.wait_for("unsubscribed") for _ in range(2)]
        assert sorted(e["channel"] for e in errors) == sorted(
            [f"project:{t.projects[1]}", f"project:{other.projects[0]}"]
        )
        assert all(e["code"] == 103 for e in errors)
    finally:
        await js.stop()
