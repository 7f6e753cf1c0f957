"""The one-origin session cookie (stock Uppy 6 Companion mode sends only cookies): traded
for a bearer token, accepted only from the public origin, 401 when expired or ended, and
``GET /api/v1/me`` (the user's projects by name)."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from core.db import tenant_transaction
from server.auth import mint_token
from server.session_cookie import COOKIE_NAME, SessionStore
from tests.conftest import TenantFixture


def public_origin(settings: Any) -> str:
    return str(settings.public_url).rstrip("/")


async def open_session(client: httpx.AsyncClient, t: TenantFixture) -> str:
    r = await client.post("/api/v1/session", headers=t.auth())
    assert r.status_code == 201, r.text
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict"), (
        set_cookie
    )
    assert "Max-Age=" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # the public URL is http here; https adds it
    cookie = r.cookies[COOKIE_NAME]
    assert t.tokens["field_worker"] not in set_cookie  # an opaque id, never the token
    client.cookies.clear()
    return cookie


def companion_create(t: TenantFixture) -> dict[str, Any]:
    return {
        "filename": "plano.pdf",
        "type": "application/pdf",
        "metadata": {"projectId": str(t.projects[0]), "name": "plano.pdf"},
    }


async def test_cookie_works_same_origin_only(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any
) -> None:
    cookie = await open_session(client, tenant)
    jar = {COOKIE_NAME: cookie}
    origin = public_origin(settings)
    # Same origin (Origin header on a POST, Referer on a GET as Chromium sends them): accepted.
    r = await client.post(
        "/s3/multipart", json=companion_create(tenant), cookies=jar, headers={"Origin": origin}
    )
    assert r.status_code == 200, r.text
    created = r.json()
    r = await client.get(
        f"/s3/multipart/{created['uploadId']}/1",
        params={"key": created["key"]},
        cookies=jar,
        headers={"Referer": f"{origin}/uppy6.html"},
    )
    assert r.status_code == 200, r.text
    # Cross-origin, or no origin at all, with the cookie alone: 403.
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": origin.replace("127.0.0.1", "localhost")},
        {"Referer": "https://evil.example/page"},
        {},
    ):
        r = await client.post("/s3/multipart", json=companion_create(tenant), cookies=jar, headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert r.json()["error"]["code"] == "cross_origin"
        r = await client.get("/api/v1/me", cookies=jar, headers=headers)
        assert r.status_code == 403, (headers, r.text)
    # A bearer token still works from anywhere (CORS decides for browsers).
    r = await client.get("/api/v1/me", headers={**tenant.auth(), "Origin": "http://evil.example"})
    assert r.status_code == 200


async def test_expired_unknown_and_ended_sessions_are_401(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any, redis: Redis
) -> None:
    origin = {"Origin": public_origin(settings)}
    # Unknown id: 401.
    r = await client.get("/api/v1/me", cookies={COOKIE_NAME: "made-up"}, headers=origin)
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_expired"
    # A session whose token has expired (stored before it did): 401, not the principal.
    short = mint_token(
        settings,
        user_id=tenant.users["field_worker"],
        tenant_id=tenant.tenant_id,
        role="field_worker",
        ttl_seconds=-120,
    )
    store = SessionStore(redis)
    session_id = "expired-session-for-test"
    await redis.set(store._key(session_id), short, ex=60)
    r = await client.get("/api/v1/me", cookies={COOKIE_NAME: session_id}, headers=origin)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired", r.text
    # An expired bearer token cannot open a session.
    r = await client.post("/api/v1/session", headers={"Authorization": f"Bearer {short}"})
    assert r.status_code == 401
    # A fresh session lives exactly as long as its token.
    cookie = await open_session(client, tenant)
    ttl = await redis.ttl(store._key(cookie))
    assert 0 < ttl <= 3600
    # Logout ends it: the same cookie is 401 afterwards.
    r = await client.delete("/api/v1/session", cookies={COOKIE_NAME: cookie}, headers=origin)
    assert r.status_code == 204
    assert COOKIE_NAME in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    r = await client.get("/api/v1/me", cookies={COOKIE_NAME: cookie}, headers=origin)
    assert r.status_code == 401
    # Logout without a cookie: 401; from another origin: 403 (and the session survives).
    assert (await client.delete("/api/v1/session")).status_code == 401
    other = await open_session(client, tenant)
    r = await client.delete(
        "/api/v1/session", cookies={COOKIE_NAME: other}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert (await client.get("/api/v1/me", cookies={COOKIE_NAME: other}, headers=origin)).status_code == 200
    # A cookie cannot mint another session.
    r = await client.post("/api/v1/session", cookies={COOKIE_NAME: other}, headers=origin)
    assert r.status_code == 401


async def test_me_lists_projects_by_name(client: httpx.AsyncClient, tenant: TenantFixture, pool: Any) -> None:
    names = {}
    async with tenant_transaction(pool, tenant.tenant_id, readonly=True) as conn:
        for project in tenant.projects:
            names[str(project)] = await conn.fetchval(
                "SELECT name FROM projects WHERE project_id = $1", project
            )
    me = (await client.get("/api/v1/me", headers=tenant.auth())).json()
    assert me["role"] == "field_worker" and me["can_upload"] is True
    assert me["user"]["id"] == str(tenant.users["field_worker"])
    assert me["tenant"]["id"] == str(tenant.tenant_id) and me["tenant"]["name"].startswith("Constructora")
    assert me["projects"] == [{"id": str(tenant.projects[0]), "name": names[str(tenant.projects[0])]}]
    admin = (await client.get("/api/v1/me", headers=tenant.auth("admin"))).json()
    assert {p["id"] for p in admin["projects"]} == {str(p) for p in tenant.projects}
    investor = (await client.get("/api/v1/me", headers=tenant.auth("investor"))).json()
    assert investor["can_upload"] is False and len(investor["projects"]) == 1
    outsider = (await client.get("/api/v1/me", headers=tenant.auth("outsider"))).json()
    assert outsider["projects"] == []
    assert (await client.get("/api/v1/me")).status_code == 401
