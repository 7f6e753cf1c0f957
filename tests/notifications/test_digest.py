"""Daily digests against a real SMTP server (aiosmtpd) and moto's SES."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from core.db import tenant_transaction
from core.settings import Settings
from devstack.smtp_sink import SmtpSink
from server import admin
from subscribers import preferences
from subscribers.digest.scheduler import DigestScheduler
from subscribers.digest.senders import SesSender, SmtpSender
from subscribers.digest.service import DigestService, S3Presigner
from tests.conftest import TenantFixture
from tests.notifications.seed import seed_upload

DAY = date(2026, 3, 9)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


async def _user(
    pool: asyncpg.Pool,
    t: TenantFixture,
    name: str,
    role: str,
    *,
    project: int = 0,
    timezone: str | None = None,
    locale: str | None = None,
) -> tuple[uuid.UUID, str]:
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    row = await admin.create_user(pool, t.tenant_id, email, role, timezone=timezone, locale=locale)
    await admin.add_member(pool, t.projects[project], row["user_id"])
    return uuid.UUID(row["user_id"]), email


@pytest.fixture
async def seeded(pool: asyncpg.Pool, make_tenant: Any) -> dict[str, Any]:
    """Tenant in Mexico City (es); investors in Mexico City (es), São Paulo (pt-BR) and an
    English speaker; the admin opted in. Uploads around the two local midnights of DAY."""
    t: TenantFixture = await make_tenant(timezone="America/Mexico_City", locale="es")
    sp, sp_email = await _user(pool, t, "inv-sp", "investor", timezone="America/Sao_Paulo", locale="pt-BR")
    en, en_email = await _user(pool, t, "inv-en", "investor", locale="en")
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await preferences.set_digest_enabled(conn, t.tenant_id, t.users["admin"], True)
        emails = dict(await conn.fetch("SELECT user_id, email FROM users"))
    fw, p0 = t.users["field_worker"], t.projects[0]
    # 04:00Z Mar 9 = 01:00 São Paulo (Mar 9) = 22:00 Mexico City (Mar 8)
    u1 = await seed_upload(
        pool,
        t.tenant_id,
        p0,
        fw,
        file_name="fachada.jpg",
        status="ready",
        created_at=_at("2026-03-09T04:00:00"),
    )
    # 12:00Z Mar 9: Mar 9 everywhere
    await seed_upload(
        pool,
        t.tenant_id,
        p0,
        fw,
        file_name="contrato.pdf",
        declared_type="application/pdf",
        status="ready",
        created_at=_at("2026-03-09T12:00:00"),
    )
    # 04:00Z / 05:00Z Mar 10 = Mar 10 in São Paulo, 22:00 / 23:00 Mar 9 in Mexico City
    await seed_upload(
        pool,
        t.tenant_id,
        p0,
        fw,
        file_name="<script>alert(1)</script>.jpg",
        status="quarantined",
        reason="infected",
        created_at=_at("2026-03-10T04:00:00"),
    )
    await seed_upload(
        pool,
        t.tenant_id,
        p0,
        fw,
        file_name="planta.dwg",
        declared_type="image/vnd.dwg",
        status="failed",
        reason="type_mismatch",
        created_at=_at("2026-03-10T05:00:00"),
    )
    # another project nobody but the admin sees, and the next day
    await seed_upload(
        pool,
        t.tenant_id,
        t.projects[1],
        fw,
        file_name="otro.jpg",
        status="ready",
        created_at=_at("2026-03-09T15:00:00"),
    )
    await seed_upload(
        pool,
        t.tenant_id,
        p0,
        fw,
        file_name="despues.jpg",
        status="ready",
        created_at=_at("2026-03-11T15:00:00"),
    )
    return {
        "t": t,
        "mx": emails[t.users["investor"]],
        "sp": sp_email,
        "en": en_email,
        "admin": emails[t.users["admin"]],
        "fw": emails[fw],
        "outsider": emails[t.users["outsider"]],
        "sp_id": sp,
        "en_id": en,
        "u1": u1,
    }


def _service(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, sender: Any, s3: Any, now: datetime | None = None
) -> DigestService:
    kwargs: dict[str, Any] = {"clock": (lambda: now)} if now else {}
    return DigestService(pool, redis, sender, S3Presigner.from_settings(settings), settings, **kwargs)


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _one(sink: SmtpSink, address: str) -> EmailMessage:
    mails = sink.mails_to(address)
    assert len(mails) == 1, f"{address}: {len(mails)} mails"
    return mails[0].parsed()


async def test_recipients_counts_and_local_days(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    service = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    await service.run_day(DAY)
    for who in ("fw", "outsider"):
        assert smtp_sink.mails_to(seeded[who]) == []

    mx_text, mx_html = _parts(_one(smtp_sink, seeded["mx"]))  # Mexico City: uploads 2, 3, 4
    assert "Archivos subidos: 3  (Imágenes: 1, Documentos: 1, Otros: 1)" in mx_text
    assert "Listos: 1  |  Con error: 1  |  En cuarentena: 1" in mx_text
    assert (
        "planta.dwg (Obra 0" in mx_text
        and "error — el contenido no coincide con el tipo declarado" in mx_text
    )
    assert "cuarentena — se detectó malware" in mx_text
    assert "fachada.jpg" not in mx_text  # 22:00 on Mar 8 in Mexico City

    sp_text, sp_html = _parts(_one(smtp_sink, seeded["sp"]))  # São Paulo: uploads 1, 2
    assert "Arquivos enviados: 2  (Imagens: 1, Documentos: 1, Outros: 0)" in sp_text
    assert "Prontos: 2  |  Com erro: 0  |  Em quarentena: 0" in sp_text
    thumbs = re.findall(r'<img src="([^"]+)"', sp_html)
    assert len(thumbs) == 1
    url = urlsplit(thumbs[0].replace("&amp;", "&"))
    assert url.path.endswith(f"/uploads/{seeded['u1']}/derived/thumb-200.jpg")
    assert "X-Amz-Expires=604800" in url.query and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url.query
    assert "<img" not in mx_html  # Mexico City's only image is quarantined: no thumbnail

    admin_text, _ = _parts(_one(smtp_sink, seeded["admin"]))  # opted in, sees both projects
    assert "Archivos subidos: 4" in admin_text and "Obra 1" in admin_text


async def test_locales_html_and_text(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    service = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    await service.run_day(DAY)
    expected = {
        "mx": ("es", "Resumen del 9 mar: 3 archivos en 1 proyecto", "lunes, 9 de marzo de 2026"),
        "sp": ("pt-BR", "Resumo de 9 de mar.: 2 arquivos em 1 projeto", "segunda-feira, 9 de março de 2026"),
        "en": ("en", "Digest for Mar 9: 3 files in 1 project", "Monday, March 9, 2026"),
    }
    for who, (lang, subject, day) in expected.items():
        message = _one(smtp_sink, seeded[who])
        assert message["Subject"] == subject
        assert message["Content-Language"] == lang
        assert message.get_content_type() == "multipart/alternative"
        text, html = _parts(message)
        assert day in text and day in html
        assert f'<html lang="{lang}">' in html
        assert 'style="' in html and "<style" not in html  # inlined CSS only
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in html or who == "sp"
        assert "<script>" not in html
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(
            r"<https?://[^>]+/api/v1/unsubscribe\?token=[\w.-]+>", message["List-Unsubscribe"]
        )


async def test_unsubscribe_one_post_stops_next_digest(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
    client: httpx.AsyncClient,
) -> None:
    service = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    await service.run_day(DAY)
    message = _one(smtp_sink, seeded["sp"])
    link = message["List-Unsubscribe"].strip("<>")
    path = link.removeprefix(settings.public_url)
    page = await client.get(path)  # a GET (link scanner) changes nothing
    assert page.status_code == 200 and "Deixar de receber o resumo em" in page.text
    assert '<form method="post"' in page.text
    response = await client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert "não receberá mais" in response.text
    await service.run_day(date(2026, 3, 11))  # the next digest with activity
    assert len(smtp_sink.mails_to(seeded["sp"])) == 1
    assert len(smtp_sink.mails_to(seeded["mx"])) == 2
    # a tampered token or a bare POST does nothing
    bad = await client.post(path[:-3] + "abc", content=b"List-Unsubscribe=One-Click")
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "invalid_token"
    assert (await client.post(path, content=b"")).status_code == 400


async def test_running_twice_sends_once(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    service = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    other = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)  # a second instance
    await asyncio.gather(service.run_day(DAY), other.run_day(DAY))
    await service.run_day(DAY)
    for who in ("mx", "sp", "en", "admin"):
        assert len(smtp_sink.mails_to(seeded[who])) == 1
    forced = await service.deliver(seeded["t"].tenant_id, seeded["sp_id"], DAY, force=True)
    assert forced == "sent" and len(smtp_sink.mails_to(seeded["sp"])) == 2


async def test_two_schedulers_send_once(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    # 12:00Z Mar 10: 09:00 in São Paulo (due), 06:00 in Mexico City (not yet)
    early = _at("2026-03-10T12:00:00")
    key = f"bp:digest:leader:test:{uuid.uuid4().hex}"
    schedulers = [
        DigestScheduler(
            _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client, early),
            redis,
            interval=0.05,
            clock=lambda: early,
            leader_key=key,
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(s.tick() for s in schedulers))
    assert sorted(s.led_ticks for s in schedulers) == [0, 1]
    assert len(smtp_sink.mails_to(seeded["sp"])) == 1
    assert smtp_sink.mails_to(seeded["mx"]) == []
    # Both loops running; the clock moves to 14:30Z (08:30 in Mexico City).
    late = _at("2026-03-10T14:30:00")
    for s in schedulers:
        s._clock = lambda: late
        s._service._clock = lambda: late
    for s in schedulers:
        await s.start()
    try:
        for _ in range(400):
            if sum(s.ticks for s in schedulers) >= 12 and smtp_sink.mails_to(seeded["mx"]):
                break
            await asyncio.sleep(0.05)
    finally:
        for s in schedulers:
            await s.stop()
    assert all(s.error is None for s in schedulers)
    for who in ("mx", "sp", "en", "admin"):
        assert len(smtp_sink.mails_to(seeded[who])) == 1, who


async def test_failure_is_recorded_then_retried(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    from devstack.process import free_port

    t = seeded["t"]
    down = _service(
        pool, redis, settings, SmtpSender(f"smtp://127.0.0.1:{free_port()}", timeout=5), s3_client
    )
    assert await down.deliver(t.tenant_id, seeded["sp_id"], DAY) == "failed"
    async with tenant_transaction(pool, t.tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM digest_deliveries WHERE user_id = $1", seeded["sp_id"])
    assert row["state"] == "failed" and row["attempts"] == 1 and "SMTP" in row["error"]
    assert row["retry_at"] is not None
    up = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    assert await up.deliver(t.tenant_id, seeded["sp_id"], DAY) == "skipped"  # not before retry_at
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await conn.execute(
            "UPDATE digest_deliveries SET retry_at = now() - interval '1 second' WHERE user_id = $1",
            seeded["sp_id"],
        )
    due = await up.due_now(_at("2026-03-10T14:30:00"))
    assert any(d.user_id == seeded["sp_id"] for d in due)
    assert await up.deliver(t.tenant_id, seeded["sp_id"], DAY) == "sent"
    async with tenant_transaction(pool, t.tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM digest_deliveries WHERE user_id = $1", seeded["sp_id"])
    assert (row["state"], row["attempts"], row["error"]) == ("sent", 2, None)
    assert len(smtp_sink.mails_to(seeded["sp"])) == 1


async def test_nothing_happened_no_email_unless_configured(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    s3_client: Any,
    smtp_sink: SmtpSink,
    seeded: dict[str, Any],
) -> None:
    quiet_day = date(2026, 3, 1)
    t = seeded["t"]
    service = _service(pool, redis, settings, SmtpSender(smtp_sink.url), s3_client)
    assert await service.deliver(t.tenant_id, seeded["en_id"], quiet_day) == "empty"
    assert smtp_sink.mails_to(seeded["en"]) == []
    chatty = _service(
        pool, redis, settings.replace(digest_send_empty=True), SmtpSender(smtp_sink.url), s3_client
    )
    assert await chatty.deliver(t.tenant_id, seeded["sp_id"], quiet_day) == "sent"
    text, _ = _parts(_one(smtp_sink, seeded["sp"]))
    assert "Não houve atividade" in text


async def test_ses_sender_through_moto(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, s3_client: Any, seeded: dict[str, Any]
) -> None:
    assert settings.smtp_url is None  # sender_for → SES
    sender = SesSender(settings)
    try:
        service = _service(pool, redis, settings, sender, s3_client)
        assert await service.deliver(seeded["t"].tenant_id, seeded["sp_id"], DAY) == "sent"
    finally:
        await sender.close()
    # The session's moto runs in this process: read what its SES backend recorded (its
    # data.json walks every backend and fails on unrelated S3 state left by other tests).
    raw = [m for m in _ses_messages() if seeded["sp"] in " ".join(m.destinations)]
    assert len(raw) == 1
    body = raw[0].raw_data
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in body
    assert "Arquivos enviados" in body or "Content-Transfer-Encoding" in body


def _ses_messages() -> list[Any]:
    from moto.ses.models import ses_backends

    return [m for backend in _all_regions(ses_backends) for m in backend.sent_messages]


def _all_regions(backends: Any) -> list[Any]:
    return [backend for regions in backends.values() for backend in regions.values()]
