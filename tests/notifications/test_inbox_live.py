"""The inbox live on ``user:`` and push only when it helps, against a real server (uvicorn,
hub, SNS → SQS push consumer, FCM emulator) and the stock ``centrifuge`` JS SDK."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from core.db import tenant_transaction
from core.events import Event, EventType
from core.settings import Settings
from core.status import UploadStatus
from devstack.aws import client as aws_client
from devstack.fcm_emulator import FcmEmulator
from server.app import create_app
from server.realtime.channels import Channel, Namespace
from subscribers.push.notifier import PushNotifier
from tests.conftest import TenantFixture
from tests.notifications.conftest import RecordingSleep
from tests.notifications.seed import add_device, event_for, seed_upload
from tests.realtime.conftest import FAST, RealtimeServer
from tests.realtime.jsclient import JsClient

DEFER = 30  # long: a read must end the wait, never the clock


def _topic(event: Event) -> str:
    return {"upload.failed": "upload-failed", "upload.completed": "upload-completed"}.get(
        event.type.value, "processing-completed"
    )


async def _sns(stack: Any, event: Event) -> None:
    def send() -> None:
        aws_client(stack.settings, "sns").publish(
            TopicArn=stack.provisioned.topic_arns[_topic(event)], Message=event.to_json().decode()
        )

    await asyncio.to_thread(send)


async def _until(check: Callable[[], Any], what: str, attempts: int = 600) -> Any:
    for _ in range(attempts):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def server(push_settings: Settings, live_server: Any) -> RealtimeServer:
    s = push_settings.replace(**FAST, push_defer_seconds=DEFER, digest_scheduler_enabled=False)
    app = create_app(s)
    return RealtimeServer(app, live_server(app=app).url, s)


@pytest.fixture
async def js(server: RealtimeServer, tenant: TenantFixture) -> AsyncIterator[JsClient]:
    """The field worker's dashboard session, subscribed to their ``user:`` channel."""
    client = await JsClient.start(server.ws_url, tenant.tokens["field_worker"])
    await client.send("subscribe", channel=f"user:{tenant.users['field_worker']}")
    await client.send("connect")
    await client.wait_for("connected")
    await client.wait_for("subscribed")
    key = Channel(Namespace.USER, tenant.users["field_worker"]).broker_name(tenant.tenant_id)

    async def present() -> bool:
        stats = await server.run(server.node.broker.presence_stats(key))
        return bool(stats.num_clients)

    await _until(present, "presence of the session")
    try:
        yield client
    finally:
        await client.stop()


async def _inbox(js: JsClient, type_: str) -> dict[str, Any]:
    while True:
        got = await js.wait_for("publication", wait=30)
        if got["data"].get("type") == type_:
            data: dict[str, Any] = got["data"]
            return data


async def _state(pool: asyncpg.Pool, t: TenantFixture, event: Event) -> str | None:
    async with tenant_transaction(pool, t.tenant_id) as conn:
        state: str | None = await conn.fetchval(
            "SELECT state FROM push_deliveries WHERE event_id = $1", event.id
        )
    return state if state not in (None, "sending") else None


async def test_unread_count_is_live_for_the_stock_js_client(
    stack: Any, server: RealtimeServer, js: JsClient, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    t, fw = tenant, tenant.users["field_worker"]
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, file_name="viga.jpg", status="failed")
    await _sns(
        stack, event_for(EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED)
    )
    new = await _inbox(js, "inbox.item")
    assert new["unread"] == 1 and new["item"]["title"] == "No se pudo procesar tu archivo"
    assert new["item"]["upload_id"] == str(upload) and new["item"]["read"] is False
    async with httpx.AsyncClient(base_url=server.url) as http:
        read = await http.post(f"/api/v1/me/notifications/{new['item']['id']}/read", headers=t.auth())
        assert read.json() == {"unread": 0}
        assert (await _inbox(js, "inbox.unread"))["unread"] == 0
        # another user's session never sees it: the investor's own channel stays quiet
        listed = await http.get("/api/v1/me/notifications", headers=t.auth("investor"))
        assert listed.json()["items"] == []


async def test_live_session_that_reads_within_the_wait_gets_no_push(
    stack: Any,
    server: RealtimeServer,
    js: JsClient,
    pool: asyncpg.Pool,
    fcm: FcmEmulator,
    tenant: TenantFixture,
) -> None:
    t, fw = tenant, tenant.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw, platform="android")
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="ready")
    event = event_for(
        EventType.PROCESSING_COMPLETED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.READY
    )
    await _sns(stack, event)
    new = await _inbox(js, "inbox.item")  # the dashboard shows it ...
    async with httpx.AsyncClient(base_url=server.url) as http:  # ... and the user reads it
        await http.post(f"/api/v1/me/notifications/{new['item']['id']}/read", headers=t.auth())
    assert await _until(lambda: _state(pool, t, event), "the held push's outcome") == "suppressed"
    assert fcm.messages_to(token) == []


async def test_without_a_session_the_push_arrives_and_critical_ones_never_wait(
    stack: Any,
    server: RealtimeServer,
    js: JsClient,
    pool: asyncpg.Pool,
    fcm: FcmEmulator,
    tenant: TenantFixture,
    make_tenant: Any,
) -> None:
    # Nobody of tenant B is in the app: the completed push goes out, not held.
    b = await make_tenant()
    b_fw = b.users["field_worker"]
    b_token = await add_device(pool, b.tenant_id, b_fw, platform="android")
    b_upload = await seed_upload(pool, b.tenant_id, b.projects[0], b_fw, status="ready")
    done = event_for(
        EventType.PROCESSING_COMPLETED, b.tenant_id, b.projects[0], b_upload, b_fw, UploadStatus.READY
    )
    await _sns(stack, done)
    [message] = await _until(lambda: _async(fcm.messages_to(b_token)), "the push to B's phone")
    android = message["android"]["notification"]
    assert android["tag"] == f"upload-{b_upload}" and android["channel_id"] == "buildpeer_updates"
    assert android["notification_count"] == 1  # the badge: B's unread count
    # The field worker of A is live in the app, yet a failure reaches the phone while the
    # inbox item is still unread: critical pushes are never held for a read.
    t, fw = tenant, tenant.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw, platform="android")
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="quarantined")
    bad = event_for(
        EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.QUARANTINED, "infected"
    )
    await _sns(stack, bad)
    [alert] = await _until(lambda: _async(fcm.messages_to(token)), "the critical push")
    assert alert["android"]["notification"]["channel_id"] == "buildpeer_alerts"
    assert alert["android"]["priority"] == "high"
    async with httpx.AsyncClient(base_url=server.url) as http:
        items = (await http.get("/api/v1/me/notifications", headers=t.auth())).json()["items"]
    assert [i["read"] for i in items if i["upload_id"] == str(upload)] == [False]


async def _async(value: Any) -> Any:
    return value


class Online:
    """Presence answering "live" for the given users (the live answer comes from the hub's
    broker in the tests above; here the notifier's own waiting is observed)."""

    def __init__(self, *users: uuid.UUID) -> None:
        self.users = set(users)

    async def online(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return user_id in self.users


async def test_the_wait_is_only_for_non_critical_pushes(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t, fw = tenant, tenant.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw, platform="ios")
    sleep = RecordingSleep()
    notifier = PushNotifier(
        pool,
        await fcm_client(),
        push_settings.replace(push_defer_seconds=3),
        presence=Online(fw),
        sleep=sleep,
        read_poll_seconds=0.5,
    )
    failed = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
    report = await notifier.handle(
        event_for(EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], failed, fw, UploadStatus.FAILED)
    )
    assert report.sent == 1 and sleep.waits == []  # critical: at once, live or not
    ready = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="ready")
    report = await notifier.handle(
        event_for(EventType.PROCESSING_COMPLETED, t.tenant_id, t.projects[0], ready, fw, UploadStatus.READY)
    )
    assert report.sent == 1 and sum(sleep.waits) == 3  # held the whole wait, nobody read it
    completed, critical = fcm.messages_to(token)[1], fcm.messages_to(token)[0]
    assert critical["apns"]["payload"]["aps"]["sound"] == "default"
    assert "sound" not in completed["apns"]["payload"]["aps"]
    assert completed["apns"]["payload"]["aps"]["badge"] == 2  # both items unread
    assert completed["apns"]["payload"]["aps"]["thread-id"] == f"project-{t.projects[0]}"
