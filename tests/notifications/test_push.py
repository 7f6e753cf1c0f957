"""Push notifications against the local fake of the FCM v1 API (real OAuth, real HTTP)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time
from typing import Any

import aioboto3
import asyncpg
import orjson
import pytest

from core.db import tenant_transaction
from core.envelope import event_from_body
from core.events import EventType
from core.settings import Settings
from core.status import UploadStatus
from devstack.fcm_emulator import FcmEmulator
from subscribers import preferences
from subscribers.push.consumer import PushConsumer
from subscribers.push.notifier import PushNotifier, RetryLater
from subscribers.push.recipients import Audience, PushKind
from tests.conftest import TenantFixture
from tests.notifications.conftest import RecordingSleep
from tests.notifications.seed import add_device, event_for, seed_upload

Clock = Any


async def _notifier(
    pool: asyncpg.Pool,
    settings: Settings,
    fcm_client: Any,
    *,
    now: datetime | None = None,
    sleep: RecordingSleep | None = None,
    **client_kwargs: Any,
) -> PushNotifier:
    client = await fcm_client(sleep=sleep or RecordingSleep(), **client_kwargs)
    if now is None:
        return PushNotifier(pool, client, settings)
    return PushNotifier(pool, client, settings, clock=lambda: now)


async def _set_prefs(pool: asyncpg.Pool, t: TenantFixture, who: str, body: dict[str, Any]) -> None:
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await preferences.update(conn, t.tenant_id, t.users[who], "x", body)


async def _devices(pool: asyncpg.Pool, t: TenantFixture) -> dict[str, str]:
    tokens = {}
    for who, platform in (
        ("field_worker", "android"),
        ("admin", "ios"),
        ("investor", "android"),
        ("outsider", "web"),
    ):
        tokens[who] = await add_device(pool, t.tenant_id, t.users[who], platform=platform)
    return tokens


def _received(fcm: FcmEmulator, tokens: dict[str, str]) -> dict[str, int]:
    return {who: len(fcm.messages_to(tok)) for who, tok in tokens.items() if fcm.messages_to(tok)}


async def test_oauth_and_message_shape(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    token = await add_device(pool, t.tenant_id, t.users["field_worker"], platform="android")
    upload = await seed_upload(
        pool,
        t.tenant_id,
        t.projects[0],
        t.users["field_worker"],
        file_name="losa-nivel-3.pdf",
        status="failed",
        reason="corrupt",
    )
    notifier = await _notifier(pool, push_settings, fcm_client)
    report = await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED,
            t.tenant_id,
            t.projects[0],
            upload,
            t.users["field_worker"],
            UploadStatus.FAILED,
            "corrupt",
        )
    )
    assert report.sent == 1
    [message] = fcm.messages_to(token)
    request = next(r for r in fcm.requests if r.token == token)
    assert request.authorization and request.authorization.startswith("Bearer ya29.emulator-")
    assert message["notification"] == {
        "title": "No se pudo procesar tu archivo",
        "body": "losa-nivel-3.pdf: el archivo está dañado.",
    }
    data = message["data"]
    assert data["upload_id"] == str(upload) and data["project_id"] == str(t.projects[0])
    assert data["status"] == "failed" and data["reason"] == "corrupt" and data["critical"] == "true"
    assert data["deep_link"] == f"{push_settings.public_url}/projects/{t.projects[0]}/uploads/{upload}"
    assert message["android"]["collapse_key"] == f"upload-{upload}"
    assert message["android"]["priority"] == "high"
    assert message["android"]["ttl"] == f"{push_settings.push_ttl_seconds}s"


async def test_recipients_by_event_role_and_preference(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    tokens = await _devices(pool, t)
    notifier = await _notifier(pool, push_settings, fcm_client)
    fw = t.users["field_worker"]

    async def fire(kind: EventType, status: UploadStatus, reason: str | None = None) -> dict[str, int]:
        fcm.reset()
        upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status=status.value, reason=reason)
        await notifier.handle(event_for(kind, t.tenant_id, t.projects[0], upload, fw, status, reason))
        return _received(fcm, tokens)

    assert await fire(EventType.PROCESSING_COMPLETED, UploadStatus.READY) == {"field_worker": 1}
    assert await fire(EventType.UPLOAD_FAILED, UploadStatus.FAILED, "too_large") == {"field_worker": 1}
    assert await fire(EventType.UPLOAD_FAILED, UploadStatus.QUARANTINED, "infected") == {
        "field_worker": 1,
        "admin": 1,
    }
    assert await fire(EventType.UPLOAD_COMPLETED, UploadStatus.UPLOADED) == {}
    admin_msg = fcm.messages  # nothing from the last one; check the admin's text on the next
    assert admin_msg == []

    # Preferences: the uploader mutes "completed", the admin mutes quarantine alerts; the
    # uploader turns push off entirely — critical pushes still arrive.
    await _set_prefs(pool, t, "field_worker", {"push_events": {"processing.completed": False}})
    await _set_prefs(pool, t, "admin", {"push_events": {"upload.quarantined": False}})
    assert await fire(EventType.PROCESSING_COMPLETED, UploadStatus.READY) == {}
    assert await fire(EventType.UPLOAD_FAILED, UploadStatus.QUARANTINED, "infected") == {"field_worker": 1}
    await _set_prefs(pool, t, "field_worker", {"push_enabled": False})
    assert await fire(EventType.UPLOAD_FAILED, UploadStatus.FAILED, "corrupt") == {"field_worker": 1}
    with pytest.raises(preferences.PreferencesError, match="cannot be muted"):
        await _set_prefs(pool, t, "field_worker", {"push_events": {"upload.failed": False}})


async def test_admin_quarantine_alert_text_and_locale_order(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, make_tenant: Any
) -> None:
    t = await make_tenant(locale="en")
    fw = t.users["field_worker"]
    await _set_prefs(pool, t, "admin", {"locale": "es"})
    device_pt = await add_device(pool, t.tenant_id, fw, platform="android", locale="pt-BR")
    device_tenant = await add_device(pool, t.tenant_id, fw, platform="web")  # no locales → tenant's (en)
    admin_dev = await add_device(pool, t.tenant_id, t.users["admin"], platform="ios")  # user locale es
    upload = await seed_upload(
        pool, t.tenant_id, t.projects[0], fw, file_name="planta.dwg", status="quarantined", reason="infected"
    )
    notifier = await _notifier(pool, push_settings, fcm_client)
    await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED,
            t.tenant_id,
            t.projects[0],
            upload,
            fw,
            UploadStatus.QUARANTINED,
            "infected",
        )
    )
    assert fcm.messages_to(device_pt)[0]["notification"]["title"] == "Arquivo em quarentena"
    assert fcm.messages_to(device_tenant)[0]["notification"]["title"] == "File quarantined"
    web = fcm.messages_to(device_tenant)[0]["webpush"]
    assert web["headers"]["Urgency"] == "high" and web["headers"]["Topic"] == upload.hex
    admin = fcm.messages_to(admin_dev)[0]
    assert admin["notification"]["title"].startswith("Archivo en cuarentena en Obra 0")
    assert admin["data"]["critical"] == "false"
    assert admin["apns"]["headers"]["apns-collapse-id"] == f"upload-{upload}"
    assert admin["apns"]["headers"]["apns-priority"] == "10"


async def test_unregistered_and_invalid_tokens_are_deleted(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    fw = t.users["field_worker"]
    gone = await add_device(pool, t.tenant_id, fw)
    bad = await add_device(pool, t.tenant_id, fw, platform="ios")
    good = await add_device(pool, t.tenant_id, fw, platform="web")
    fcm.unregister(gone)
    fcm.invalidate(bad)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
    notifier = await _notifier(pool, push_settings, fcm_client)
    report = await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED, "corrupt"
        )
    )
    assert (report.sent, report.removed) == (1, 2)
    async with tenant_transaction(pool, t.tenant_id) as conn:
        left = await conn.fetch("SELECT token FROM device_tokens WHERE user_id = $1", fw)
    assert [r["token"] for r in left] == [good]


async def test_429_is_retried_after_retry_after(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    fw = t.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw)
    fcm.fail_next(429, retry_after=3, token=token)
    fcm.fail_next(503, token=token)
    sleep = RecordingSleep()
    notifier = await _notifier(pool, push_settings, fcm_client, sleep=sleep)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
    report = await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED, "corrupt"
        )
    )
    assert report.sent == 1
    assert [r.status for r in fcm.requests if r.token == token] == [429, 503, 200]
    assert sleep.waits[0] == 3.0  # honoured Retry-After
    assert 0.5 <= sleep.waits[1] <= 1.0  # 503 without Retry-After: backoff 1 s (jittered) on try 2
    assert len(fcm.messages_to(token)) == 1


async def test_retry_after_really_waits(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    """The same with the real clock: the retry reaches FCM no earlier than Retry-After."""
    t = tenant
    token = await add_device(pool, t.tenant_id, t.users["field_worker"])
    fcm.fail_next(429, retry_after=1, token=token)
    client = await fcm_client(sleep=asyncio.sleep)
    notifier = PushNotifier(pool, client, push_settings)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], t.users["field_worker"], status="failed")
    await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED,
            t.tenant_id,
            t.projects[0],
            upload,
            t.users["field_worker"],
            UploadStatus.FAILED,
        )
    )
    first, second = [r for r in fcm.requests if r.token == token]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0


async def test_exhausted_retries_are_redelivered_without_resending(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    fw = t.users["field_worker"]
    ok, flaky = await add_device(pool, t.tenant_id, fw), await add_device(pool, t.tenant_id, fw)
    fcm.fail_next(503, times=2, token=flaky)
    notifier = await _notifier(pool, push_settings, fcm_client, max_attempts=2)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed")
    event = event_for(EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED)
    with pytest.raises(RetryLater):
        await notifier.handle(event)
    report = await notifier.handle(event)  # the redelivery
    assert (report.sent, report.skipped) == (1, 1)
    assert len(fcm.messages_to(ok)) == 1 and len(fcm.messages_to(flaky)) == 1


async def test_no_duplicate_push_on_redelivery(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, tenant: TenantFixture
) -> None:
    t = tenant
    fw = t.users["field_worker"]
    tokens = [await add_device(pool, t.tenant_id, fw) for _ in range(3)]
    notifier = await _notifier(pool, push_settings, fcm_client)
    other = await _notifier(pool, push_settings, fcm_client)  # a second instance
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="quarantined", reason="infected")
    event = event_for(
        EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.QUARANTINED, "infected"
    )
    await asyncio.gather(notifier.handle(event), other.handle(event))
    await notifier.handle(event)
    await other.handle(event_from_body(event.to_json().decode()))
    assert [len(fcm.messages_to(tok)) for tok in tokens] == [1, 1, 1]


async def test_quiet_hours_hold_back_only_non_critical(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, make_tenant: Any
) -> None:
    t = await make_tenant(timezone="America/Mexico_City")
    fw = t.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw)
    admin_token = await add_device(pool, t.tenant_id, t.users["admin"])
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    await _set_prefs(pool, t, "field_worker", quiet)
    await _set_prefs(pool, t, "admin", {**quiet, "timezone": "America/Sao_Paulo"})
    # 05:30 UTC = 23:30 in Mexico City (quiet) and 02:30 in São Paulo (quiet)
    night = await _notifier(pool, push_settings, fcm_client, now=datetime(2026, 3, 10, 5, 30, tzinfo=UTC))
    # 14:00 UTC = 08:00 Mexico City, 11:00 São Paulo: awake
    day = await _notifier(pool, push_settings, fcm_client, now=datetime(2026, 3, 10, 14, 0, tzinfo=UTC))

    async def fire(notifier: PushNotifier, kind: EventType, status: UploadStatus) -> tuple[int, int]:
        fcm.reset()
        upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status=status.value)
        await notifier.handle(event_for(kind, t.tenant_id, t.projects[0], upload, fw, status, "infected"))
        return len(fcm.messages_to(token)), len(fcm.messages_to(admin_token))

    assert await fire(night, EventType.PROCESSING_COMPLETED, UploadStatus.READY) == (0, 0)
    assert await fire(night, EventType.UPLOAD_FAILED, UploadStatus.FAILED) == (1, 0)
    assert await fire(night, EventType.UPLOAD_FAILED, UploadStatus.QUARANTINED) == (
        1,
        0,
    )  # admin: not critical
    assert await fire(day, EventType.PROCESSING_COMPLETED, UploadStatus.READY) == (1, 0)
    assert await fire(day, EventType.UPLOAD_FAILED, UploadStatus.QUARANTINED) == (1, 1)


async def test_no_device_of_another_tenant_is_ever_targeted(
    pool: asyncpg.Pool, push_settings: Settings, fcm: FcmEmulator, fcm_client: Any, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    b_tokens = await _devices(pool, b)
    a_tokens = await _devices(pool, a)
    notifier = await _notifier(pool, push_settings, fcm_client)
    # An event of tenant A that names B's user, B's project and B's upload (a forged or
    # corrupted event): it is resolved inside A, where none of them exist.
    b_upload = await seed_upload(
        pool, b.tenant_id, b.projects[0], b.users["field_worker"], status="quarantined"
    )
    for status in (UploadStatus.QUARANTINED, UploadStatus.FAILED):
        await notifier.handle(
            event_for(
                EventType.UPLOAD_FAILED,
                a.tenant_id,
                b.projects[0],
                b_upload,
                b.users["field_worker"],
                status,
                "infected",
            )
        )
    # A real quarantine in A reaches A's uploader and admin only.
    a_upload = await seed_upload(
        pool, a.tenant_id, a.projects[0], a.users["field_worker"], status="quarantined"
    )
    await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED,
            a.tenant_id,
            a.projects[0],
            a_upload,
            a.users["field_worker"],
            UploadStatus.QUARANTINED,
            "infected",
        )
    )
    assert _received(fcm, b_tokens) == {}
    # The forged events found no upload in A and alerted nobody; the real one reached A only.
    assert _received(fcm, a_tokens) == {"field_worker": 1, "admin": 1}
    # B's device tokens are not even visible inside A's transaction.
    async with tenant_transaction(pool, a.tenant_id) as conn:
        seen = await conn.fetchval(
            "SELECT count(*) FROM device_tokens WHERE token = ANY($1)", list(b_tokens.values())
        )
    assert seen == 0


def test_kinds_and_envelopes() -> None:
    from subscribers.push.recipients import push_kind

    tid, pid, uid, usr = (uuid.uuid4() for _ in range(4))
    assert push_kind(event_for(EventType.UPLOAD_PROGRESS, tid, pid, uid, usr, UploadStatus.UPLOADING)) is None
    assert push_kind(event_for(EventType.PROCESSING_COMPLETED, tid, pid, uid, usr, UploadStatus.READY)) is (
        PushKind.COMPLETED
    )
    event = event_for(EventType.UPLOAD_FAILED, tid, pid, uid, usr, UploadStatus.QUARANTINED)
    assert push_kind(event) is PushKind.QUARANTINED
    envelope = orjson.dumps({"Type": "Notification", "MessageId": "m", "Message": event.to_json().decode()})
    assert event_from_body(envelope.decode()) == event
    assert Audience.ADMIN.value == "admin"
    assert preferences.QuietHours(time(22), time(7)).contains(time(23, 59))
    assert not preferences.QuietHours(time(22), time(7)).contains(time(7, 0))


async def test_consumer_reads_the_push_queue(
    pool: asyncpg.Pool,
    stack: Any,
    push_settings: Settings,
    fcm: FcmEmulator,
    fcm_client: Any,
    tenant: TenantFixture,
) -> None:
    t = tenant
    fw = t.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
    event = event_for(
        EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED, "corrupt"
    )
    client = await fcm_client(sleep=RecordingSleep())
    notifier = PushNotifier(pool, client, push_settings)
    kwargs = {
        "region_name": "us-east-1",
        "endpoint_url": push_settings.aws_endpoint_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    async with (
        aioboto3.Session().client("sns", **kwargs) as sns,
        aioboto3.Session().client("sqs", **kwargs) as sqs,
    ):
        consumer = PushConsumer(
            sqs, notifier, queue_name=PushConsumer.queue_for(push_settings.stack), wait_seconds=1
        )
        await consumer.start()
        try:
            queue_url = stack.provisioned.queue_urls["push"]
            await sqs.send_message(QueueUrl=queue_url, MessageBody="not an event")  # left for the DLQ
            topic = stack.provisioned.topic_arns["upload-failed"]
            for _ in range(2):  # published twice: at-least-once upstream
                await sns.publish(TopicArn=topic, Message=event.to_json().decode())
            for _ in range(200):
                if consumer.handled >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await consumer.stop()
    assert consumer.error is None
    assert consumer.handled >= 2
    assert len(fcm.messages_to(token)) == 1
