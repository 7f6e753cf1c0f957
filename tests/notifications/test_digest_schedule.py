"""Each user's digest hour and period: weekly digests on Monday cover the seven local days
before, in the user's own zone, and are sent once; daily ones at the user's hour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from core.db import tenant_transaction
from core.settings import Settings
from devstack.smtp_sink import SmtpSink
from subscribers.digest.senders import SmtpSender
from subscribers.digest.service import DigestService, S3Presigner
from tests.conftest import TenantFixture
from tests.notifications.seed import seed_upload


def _z(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


async def test_weekly_covers_the_seven_local_days_before_monday_once(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    smtp_sink: SmtpSink,
    make_tenant: Any,
    client: httpx.AsyncClient,
) -> None:
    t: TenantFixture = await make_tenant(timezone="America/Mexico_City", locale="es")
    put = await client.put(
        "/api/v1/me/preferences",
        headers=t.auth("investor"),
        json={
            "digest_frequency": "weekly",
            "digest_hour": 7,
            "timezone": "America/Sao_Paulo",
            "locale": "pt-BR",
        },
    )
    assert put.status_code == 200, put.text
    assert put.json()["digest_frequency"] == "weekly" and put.json()["digest_hour"] == 7
    for bad in ({"digest_hour": 24}, {"digest_hour": "7"}, {"digest_frequency": "monthly"}):
        response = await client.put("/api/v1/me/preferences", headers=t.auth("investor"), json=bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_preferences"
    # The admin: a daily digest at 06:00 in the tenant's zone (Mexico City, UTC-6).
    put = await client.put(
        "/api/v1/me/preferences", headers=t.auth("admin"), json={"digest_enabled": True, "digest_hour": 6}
    )
    assert put.status_code == 200
    fw, p0 = t.users["field_worker"], t.projects[0]
    for name, at in (
        ("antes.jpg", "2026-03-09T02:50:00"),  # Sun 8 Mar 23:50 in São Paulo: the week before
        ("lunes.jpg", "2026-03-09T03:10:00"),  # Mon 9 Mar 00:10 São Paulo (Sunday in Mexico)
        ("domingo.jpg", "2026-03-16T02:50:00"),  # Sun 15 Mar 23:50 São Paulo
        ("hoy.jpg", "2026-03-16T03:10:00"),  # Mon 16 Mar 00:10 São Paulo: the next week
    ):
        await seed_upload(pool, t.tenant_id, p0, fw, file_name=name, created_at=_z(at))
    service = DigestService(
        pool, redis, SmtpSender(smtp_sink.url), S3Presigner.from_settings(settings), settings
    )

    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        emails = dict(await conn.fetch("SELECT user_id, email FROM users"))
    investor, admin = emails[t.users["investor"]], emails[t.users["admin"]]

    await service.run_due(_z("2026-03-16T09:59:00"))  # 06:59 in São Paulo: not yet
    assert smtp_sink.mails_to(investor) == []
    await service.run_due(_z("2026-03-16T10:00:00"))  # 07:00 Monday in São Paulo
    [mail] = smtp_sink.mails_to(investor)
    message = mail.parsed()
    assert message["Subject"] == "Resumo semanal 9 de mar.–15 de mar.: 2 arquivos em 1 projeto"
    text = message.get_body(("plain",))
    assert text is not None
    assert "segunda-feira, 9 de março de 2026 a domingo, 15 de março de 2026" in text.get_content()
    # The admin's daily digest waits for 06:00 in Mexico City (12:00Z).
    assert smtp_sink.mails_to(admin) == []
    await service.run_due(_z("2026-03-16T11:59:00"))
    assert smtp_sink.mails_to(admin) == []
    await service.run_due(_z("2026-03-16T12:00:00"))
    [daily] = smtp_sink.mails_to(admin)
    assert daily.parsed()["Subject"] == "Resumen del 15 mar: 2 archivos en 1 proyecto"  # Mexico's Sunday
    for later in ("2026-03-16T23:00:00", "2026-03-17T10:00:00", "2026-03-22T10:00:00"):
        await service.run_due(_z(later))
    assert len(smtp_sink.mails_to(investor)) == 1  # once
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        row = await conn.fetchrow(
            "SELECT digest_date, period, state FROM digest_deliveries WHERE user_id = $1", t.users["investor"]
        )
        inbox = await conn.fetchrow(
            "SELECT kind, title, body FROM inbox_items WHERE user_id = $1", t.users["investor"]
        )
    assert (str(row["digest_date"]), row["period"], row["state"]) == ("2026-03-09", "weekly", "sent")
    assert inbox["kind"] == "digest" and inbox["title"] == "Resumo semanal"
    assert inbox["body"] == message["Subject"]  # the digest's headline is in the inbox
    # The next Monday: the next seven days.
    await service.run_due(_z("2026-03-23T10:00:00"))
    subjects = [m.parsed()["Subject"] for m in smtp_sink.mails_to(investor)]
    assert subjects[1] == "Resumo semanal 16 de mar.–22 de mar.: 1 arquivo em 1 projeto"
