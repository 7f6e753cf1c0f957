"""Devices, preferences and unsubscribe routes: input checks, ownership, tenant isolation."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from core.db import tenant_transaction
from tests.conftest import TenantFixture


async def test_devices_register_refresh_remove(
    client: httpx.AsyncClient, tenant: TenantFixture, pool: asyncpg.Pool
) -> None:
    t = tenant
    body = {"token": "fcm-token-1", "platform": "android", "locale": "pt_BR"}
    first = await client.post("/api/v1/devices", json=body, headers=t.auth("field_worker"))
    assert first.status_code == 201, first.text
    assert first.json()["locale"] == "pt-BR"
    again = await client.post(
        "/api/v1/devices", json={**body, "locale": "en"}, headers=t.auth("field_worker")
    )
    assert again.status_code == 200 and again.json()["device_id"] == first.json()["device_id"]
    second = await client.post(
        "/api/v1/devices", json={"token": "fcm-token-2", "platform": "ios"}, headers=t.auth("field_worker")
    )
    assert second.status_code == 201
    # someone else cannot remove my device
    other = await client.request(
        "DELETE", "/api/v1/devices", json={"token": "fcm-token-1"}, headers=t.auth("investor")
    )
    assert other.status_code == 404
    gone = await client.request(
        "DELETE", "/api/v1/devices", json={"token": "fcm-token-1"}, headers=t.auth("field_worker")
    )
    assert gone.status_code == 204
    assert (
        await client.delete("/api/v1/devices?token=fcm-token-1", headers=t.auth("field_worker"))
    ).status_code == 404
    async with tenant_transaction(pool, t.tenant_id) as conn:
        tokens = [r["token"] for r in await conn.fetch("SELECT token FROM device_tokens")]
    assert tokens == ["fcm-token-2"]


async def test_device_input_errors(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth("field_worker")
    cases: list[tuple[Any, str]] = [
        ({"token": "t", "platform": "blackberry"}, "platform"),
        ({"token": "", "platform": "ios"}, "token"),
        ({"token": "a b", "platform": "ios"}, "token"),
        ({"token": "t", "platform": "ios", "locale": "fr"}, "locale"),
        ({"token": "t", "platform": "ios", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        r = await client.post("/api/v1/devices", json=body, headers=h)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "invalid_device" and field in r.json()["error"]["message"]
    r = await client.post("/api/v1/devices", content=b"{nope", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert (await client.post("/api/v1/devices", json={"token": "t", "platform": "ios"})).status_code == 401


async def test_same_token_in_two_tenants_stays_apart(
    client: httpx.AsyncClient, make_tenant: Any, pool: asyncpg.Pool
) -> None:
    a, b = await make_tenant(), await make_tenant()
    body = {"token": "shared-phone-token", "platform": "android"}
    assert (
        await client.post("/api/v1/devices", json=body, headers=a.auth("field_worker"))
    ).status_code == 201
    assert (
        await client.post("/api/v1/devices", json=body, headers=b.auth("field_worker"))
    ).status_code == 201
    # B removing "its" token leaves A's registration alone
    r = await client.request(
        "DELETE", "/api/v1/devices", json={"token": body["token"]}, headers=b.auth("field_worker")
    )
    assert r.status_code == 204
    async with tenant_transaction(pool, a.tenant_id) as conn:
        assert (
            await conn.fetchval("SELECT user_id FROM device_tokens WHERE token = $1", body["token"])
            == (a.users["field_worker"])
        )


async def test_preferences_defaults_and_updates(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    t = tenant
    investor = (await client.get("/api/v1/me/preferences", headers=t.auth("investor"))).json()
    assert investor["digest_active"] is True and investor["digest_enabled"] is None
    worker = (await client.get("/api/v1/me/preferences", headers=t.auth("field_worker"))).json()
    assert worker["digest_active"] is False
    assert worker["push_events"] == {"processing.completed": True, "upload.quarantined": True}
    assert worker["effective_timezone"] == "America/Mexico_City" and worker["effective_locale"] == "es"
    put = await client.put(
        "/api/v1/me/preferences",
        json={
            "quiet_hours": {"start": "22:00", "end": "06:30"},
            "push_events": {"processing.completed": False},
            "digest_enabled": True,
            "timezone": "America/Sao_Paulo",
            "locale": "pt-BR",
        },
        headers=t.auth("field_worker"),
    )
    assert put.status_code == 200, put.text
    doc = (await client.get("/api/v1/me/preferences", headers=t.auth("field_worker"))).json()
    assert doc["quiet_hours"] == {"start": "22:00", "end": "06:30"}
    assert doc["push_events"]["processing.completed"] is False and doc["digest_active"] is True
    assert (doc["effective_timezone"], doc["effective_locale"]) == ("America/Sao_Paulo", "pt-BR")
    # other fields survive a partial PUT; null clears quiet hours
    await client.put("/api/v1/me/preferences", json={"quiet_hours": None}, headers=t.auth("field_worker"))
    doc = (await client.get("/api/v1/me/preferences", headers=t.auth("field_worker"))).json()
    assert doc["quiet_hours"] is None and doc["push_events"]["processing.completed"] is False


async def test_preferences_input_errors(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth("field_worker")
    for body, needle in [
        ({"push_events": {"upload.failed": False}}, "cannot be muted"),
        ({"push_events": {"upload.party": True}}, "unknown event"),
        ({"quiet_hours": {"start": "25:00", "end": "06:00"}}, "quiet_hours.start"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"locale": "fr"}, "locale"),
        ({"push_enabled": "yes"}, "push_enabled"),
        ({"colour": "blue"}, "colour"),
    ]:
        r = await client.put("/api/v1/me/preferences", json=body, headers=h)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "invalid_preferences" and needle in r.json()["error"]["message"]
    assert (await client.get("/api/v1/me/preferences")).status_code == 401


async def test_unsubscribe_rejects_bad_links(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/v1/unsubscribe?token=forged.token")
    assert page.status_code == 403 and "no es válido" in page.text
    r = await client.post("/api/v1/unsubscribe?token=forged.token", content=b"List-Unsubscribe=One-Click")
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_token"


async def test_routes_are_in_openapi(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths["/api/v1/devices"]) == {"post", "delete"}
    assert set(paths["/api/v1/me/preferences"]) == {"get", "put"}
    assert set(paths["/api/v1/unsubscribe"]) == {"get", "post"}
    assert "Preferences" in schema["components"]["schemas"]
