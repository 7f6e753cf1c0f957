"""Lifting an email suppression: ``GET /api/v1/email-suppressions`` and ``DELETE
/api/v1/email-suppressions/{email}`` for tenant admins (403 for others, 400 for garbage, 404
for an address not suppressed here, another tenant's included), and ``buildpeer suppression``.
Suppressions come from SES records through the real feedback handler; a lifted address gets
the next digest again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from core.db import tenant_transaction
from core.settings import Settings
from devstack.smtp_sink import SmtpSink
from server import admin
from subscribers.digest.senders import SmtpSender
from subscribers.digest.service import DigestService, S3Presigner
from subscribers.email_feedback import FeedbackHandler, Suppression, record
from tests.conftest import TenantFixture
from tests.notifications.seed import seed_upload
from tests.notifications.test_email_feedback import ses_record

ROUTE = "/api/v1/email-suppressions"
DAY = date(2026, 4, 6)


async def _email(pool: asyncpg.Pool, t: TenantFixture, role: str) -> str:
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        email: str = await conn.fetchval("SELECT email FROM users WHERE user_id = $1", t.users[role])
    return email


async def _suppress(pool: asyncpg.Pool, t: TenantFixture, kind: str, email: str) -> None:
    """An SES event record (tagged with the tenant), through the feedback handler."""
    body = orjson.dumps(ses_record(kind, email, tenant_id=t.tenant_id)).decode()
    assert await FeedbackHandler(pool).handle(body) == 1


async def _reasons(pool: asyncpg.Pool, t: TenantFixture) -> dict[str, str]:
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        rows = await conn.fetch("SELECT email, reason FROM email_suppressions")
    return {r["email"]: r["reason"] for r in rows}


def _path(email: str) -> str:
    return f"{ROUTE}/{quote(email, safe='')}"


async def test_an_admin_lists_and_lifts_a_suppression_and_the_digest_goes_again(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    smtp_sink: SmtpSink,
    make_tenant: Any,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t: TenantFixture = await make_tenant()
    investor = await _email(pool, t, "investor")
    await _suppress(pool, t, "Bounce", investor)
    await seed_upload(
        pool,
        t.tenant_id,
        t.projects[0],
        t.users["field_worker"],
        created_at=datetime(2026, 4, 6, 18, tzinfo=UTC),
    )

    r = await client.get(ROUTE, headers=t.auth("admin"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert (item["email"], item["reason"], item["detail"]) == (investor, "bounce", "Permanent/General")
    assert item["diagnostic"] == "smtp; 550 5.1.1 user unknown"
    assert item["user_ids"] == [str(t.users["investor"])]
    assert datetime.fromisoformat(item["event_at"]) == datetime(2026, 4, 7, 13, 0, 3, 669000, tzinfo=UTC)
    prefs = (await client.get("/api/v1/me/preferences", headers=t.auth("investor"))).json()
    assert prefs["digest_active"] is False and prefs["digest_suppressed"]["reason"] == "bounce"

    caplog.set_level(logging.INFO, logger="server.notifications_api")
    r = await client.delete(_path(investor.upper()), headers=t.auth("admin"))  # case does not matter
    assert r.status_code == 204, r.text
    [line] = [rec for rec in caplog.records if rec.getMessage() == "email suppression lifted"]
    assert line.__dict__["tenant_id"] == str(t.tenant_id) and line.__dict__["email"] == investor
    assert line.__dict__["by_user_id"] == str(t.users["admin"]) and line.__dict__["reason"] == "bounce"

    assert await _reasons(pool, t) == {}
    assert (await client.get(ROUTE, headers=t.auth("admin"))).json() == {"items": [], "next_cursor": None}
    prefs = (await client.get("/api/v1/me/preferences", headers=t.auth("investor"))).json()
    assert prefs["digest_active"] is True and prefs["digest_suppressed"] is None
    again = await client.delete(_path(investor), headers=t.auth("admin"))
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"

    # the next digest reaches the address again
    service = DigestService(
        pool, redis, SmtpSender(smtp_sink.url), S3Presigner.from_settings(settings), settings
    )
    await service.run_day(DAY)
    assert len(smtp_sink.mails_to(investor)) == 1


async def test_only_tenant_admins(pool: asyncpg.Pool, make_tenant: Any, client: httpx.AsyncClient) -> None:
    t: TenantFixture = await make_tenant()
    investor = await _email(pool, t, "investor")
    await _suppress(pool, t, "Complaint", investor)
    for role in ("field_worker", "investor", "outsider"):
        listed = await client.get(ROUTE, headers=t.auth(role))
        lifted = await client.delete(_path(investor), headers=t.auth(role))
        assert (listed.status_code, lifted.status_code) == (403, 403), role
        assert lifted.json()["error"]["code"] == "forbidden"
    # without a token: 401
    assert (await client.get(ROUTE)).status_code == 401
    assert (await client.delete(_path(investor))).status_code == 401
    assert await _reasons(pool, t) == {investor: "complaint"}  # nobody lifted it


@pytest.mark.parametrize(
    "raw",
    [
        "not-an-email",
        "@example.com",
        "someone@",
        "with space@example.com",
        "a\x00b@example.com",
        "a" * 320 + "@x.io",
    ],
)
async def test_garbage_addresses_are_400(raw: str, make_tenant: Any, client: httpx.AsyncClient) -> None:
    t: TenantFixture = await make_tenant()
    r = await client.delete(_path(raw), headers=t.auth("admin"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_email"


async def test_garbage_queries_are_400(make_tenant: Any, client: httpx.AsyncClient) -> None:
    t: TenantFixture = await make_tenant()
    for query in ("limit=0", "limit=501", "limit=abc", "limit=-1"):
        r = await client.get(f"{ROUTE}?{query}", headers=t.auth("admin"))
        assert r.status_code == 400, (query, r.text)
        assert r.json()["error"]["code"] == "invalid_query"
    # an opaque cursor that names no page: 404, as for the inbox's cursor
    for query in ("cursor=nonsense", "cursor=a%00@b.c"):
        r = await client.get(f"{ROUTE}?{query}", headers=t.auth("admin"))
        assert r.status_code == 404, (query, r.text)
        assert r.json()["error"]["code"] == "invalid_cursor"
    # an address that is not suppressed here (and never a user): 404, not 400
    r = await client.delete(_path(f"nobody-{uuid.uuid4().hex[:6]}@example.com"), headers=t.auth("admin"))
    assert r.status_code == 404


async def test_tenant_b_cannot_list_or_lift_tenant_a_suppressions(
    pool: asyncpg.Pool, make_tenant: Any, client: httpx.AsyncClient
) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    a_investor = await _email(pool, a, "investor")
    shared = f"shared-{uuid.uuid4().hex[:6]}@example.com"
    for t in (a, b):
        await admin.create_user(pool, t.tenant_id, shared, "investor")
    await _suppress(pool, a, "Bounce", a_investor)
    await _suppress(pool, a, "Complaint", shared)  # tagged with A: B's twin is not suppressed

    listed = await client.get(ROUTE, headers=b.auth("admin"))
    assert listed.status_code == 200 and listed.json()["items"] == []
    for address in (a_investor, shared):
        r = await client.delete(_path(address), headers=b.auth("admin"))
        assert r.status_code == 404, (address, r.text)
    assert await _reasons(pool, a) == {a_investor: "bounce", shared: "complaint"}

    # once B has its own suppression of the shared address, B lifts B's only
    await _suppress(pool, b, "Bounce", shared)
    assert [i["email"] for i in (await client.get(ROUTE, headers=b.auth("admin"))).json()["items"]] == [
        shared
    ]
    assert (await client.delete(_path(shared), headers=b.auth("admin"))).status_code == 204
    assert await _reasons(pool, b) == {}
    assert await _reasons(pool, a) == {a_investor: "bounce", shared: "complaint"}
    listed_a = (await client.get(ROUTE, headers=a.auth("admin"))).json()["items"]
    assert sorted(i["email"] for i in listed_a) == sorted([a_investor, shared])
    # the list names only the tenant's own users with the address
    [a_shared] = [i for i in listed_a if i["email"] == shared]
    async with tenant_transaction(pool, a.tenant_id, readonly=True) as conn:
        a_twin = await conn.fetchval("SELECT user_id FROM users WHERE email = $1", shared)
    assert a_shared["user_ids"] == [str(a_twin)]


async def test_cursor_pages_cover_every_suppression_once(
    pool: asyncpg.Pool, make_tenant: Any, client: httpx.AsyncClient
) -> None:
    t: TenantFixture = await make_tenant()
    addresses = sorted(f"p{i}-{uuid.uuid4().hex[:4]}@example.com" for i in range(5))
    async with tenant_transaction(pool, t.tenant_id) as conn:
        for address in addresses:
            await record(
                conn, t.tenant_id, Suppression(address, "bounce", None, None, None, datetime.now(UTC))
            )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={quote(cursor)}" if cursor else "?limit=2"
        r = await client.get(ROUTE + query, headers=t.auth("admin"))
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [i["email"] for i in page["items"]]
        pages += 1
        if pages == 1:  # an address added behind the cursor does not shift later pages
            async with tenant_transaction(pool, t.tenant_id) as conn:
                await record(
                    conn,
                    t.tenant_id,
                    Suppression("a-first@example.com", "bounce", None, None, None, datetime.now(UTC)),
                )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == addresses and pages == 3


async def test_cli_lists_and_lifts(
    pool: asyncpg.Pool,
    settings: Settings,
    make_tenant: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.main import main

    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    investor = await _email(pool, a, "investor")
    await _suppress(pool, a, "Complaint", investor)
    monkeypatch.setenv("BUILDPEER_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("BUILDPEER_JWT_SECRET", str(settings.jwt_secret))
    monkeypatch.setenv("BUILDPEER_VAR_DIR", str(uuid.uuid4()))  # no dev.env to pick up

    async def cli(*args: str) -> tuple[int, Any]:
        code = await asyncio.to_thread(main, list(args))
        out = capsys.readouterr()
        lines = out.out.strip().splitlines()
        return code, (orjson.loads(lines[-1]) if code == 0 and lines else out.err)

    code, listed = await cli("suppression", "list", "--tenant", str(a.tenant_id), "--json")
    assert code == 0 and [(i["email"], i["reason"]) for i in listed["items"]] == [(investor, "complaint")]
    code, listed = await cli("suppression", "list", "--tenant", str(b.tenant_id), "--json")
    assert code == 0 and listed["items"] == []
    # another tenant's suppression cannot be lifted through B
    code, err = await cli("suppression", "lift", "--tenant", str(b.tenant_id), "--email", investor)
    assert code == 2 and "is not suppressed" in err
    code, lifted = await cli(
        "suppression", "lift", "--tenant", str(a.tenant_id), "--email", investor.upper(), "--json"
    )
    assert code == 0 and lifted["lifted"]["email"] == investor and lifted["lifted"]["reason"] == "complaint"
    assert await _reasons(pool, a) == {}
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line on stderr, status 2
        await asyncio.to_thread(
            main, ["suppression", "lift", "--tenant", str(a.tenant_id), "--email", "nope"]
        )
    assert exit_info.value.code == 2 and "not an email address" in capsys.readouterr().err
