"""Retention run by the digest scheduler's leader: inbox items past 90 days, device tokens
with neither a successful send nor a re-registration for 270 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from core.db import tenant_transaction
from core.settings import Settings
from subscribers.digest.scheduler import DigestScheduler
from subscribers.digest.senders import SmtpSender
from subscribers.digest.service import DigestService, S3Presigner
from subscribers.housekeeping import Housekeeping
from subscribers.inbox.service import Inbox, NoChannel
from subscribers.inbox.store import NewItem
from tests.conftest import TenantFixture
from tests.notifications.seed import add_device


async def test_old_items_and_idle_tokens_go_recent_ones_stay(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, tenant: TenantFixture
) -> None:
    t, fw = tenant, tenant.users["field_worker"]
    await Inbox(pool, NoChannel()).add(
        t.tenant_id, [NewItem(fw, key, "digest", key, "b", "es") for key in ("old", "recent")]
    )
    tokens = {name: await add_device(pool, t.tenant_id, fw) for name in ("idle", "sent", "registered")}
    now = datetime.now(UTC)
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await conn.execute(
            "UPDATE inbox_items SET created_at = $2 WHERE source_key = 'old' AND user_id = $1",
            fw,
            now - timedelta(days=91),
        )
        await conn.execute(
            "UPDATE inbox_items SET created_at = $2 WHERE source_key = 'recent' AND user_id = $1",
            fw,
            now - timedelta(days=89),
        )
        long_ago = now - timedelta(days=300)
        await conn.execute(
            "UPDATE device_tokens SET last_seen_at = $2 WHERE token = $1", tokens["idle"], long_ago
        )
        await conn.execute(
            "UPDATE device_tokens SET last_seen_at = $2, last_success_at = $3 WHERE token = $1",
            tokens["sent"],
            long_ago,
            now - timedelta(days=10),
        )
    service = DigestService(
        pool, redis, SmtpSender("smtp://127.0.0.1:9"), S3Presigner.from_settings(settings), settings
    )
    scheduler = DigestScheduler(
        service,
        redis,
        leader_key=f"bp:test:leader:{t.tenant_id}",
        housekeeping=Housekeeping(pool, settings),
        clock=lambda: datetime(2000, 1, 3, tzinfo=UTC),  # digests due then cover empty days: none sent
    )
    await scheduler.tick()  # the leader's tick runs the housekeeping (hourly)
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        keys = [r[0] for r in await conn.fetch("SELECT source_key FROM inbox_items WHERE user_id = $1", fw)]
        left = {r[0] for r in await conn.fetch("SELECT token FROM device_tokens WHERE user_id = $1", fw)}
    assert keys == ["recent"]
    assert left == {tokens["sent"], tokens["registered"]}


async def test_a_successful_send_keeps_the_token_alive(
    pool: asyncpg.Pool, push_settings: Settings, fcm: Any, fcm_client: Any, tenant: TenantFixture
) -> None:
    from core.events import EventType
    from core.status import UploadStatus
    from subscribers.push.notifier import PushNotifier
    from tests.notifications.seed import event_for, seed_upload

    t, fw = tenant, tenant.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw)
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="failed", reason="corrupt")
    notifier = PushNotifier(pool, await fcm_client(), push_settings)
    await notifier.handle(
        event_for(EventType.UPLOAD_FAILED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.FAILED)
    )
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        assert await conn.fetchval(
            "SELECT last_success_at IS NOT NULL FROM device_tokens WHERE token = $1", token
        )
