"""The in-app inbox: who gets items (never another tenant, project or user), read /
read-all / archive over the API, cursor pages that stay stable while items arrive."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from core.db import tenant_transaction
from core.events import EventType
from core.settings import Settings
from core.status import UploadStatus
from subscribers.inbox.service import Inbox, NoChannel
from subscribers.inbox.store import NewItem
from subscribers.push.notifier import PushNotifier
from tests.conftest import TenantFixture
from tests.notifications.seed import event_for, seed_upload


class RecordingChannel:
    """What the inbox publishes on ``user:`` channels (the live path is tested with the
    stock JS client in test_inbox_live.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[uuid.UUID, uuid.UUID, dict[str, Any]]] = []

    async def publish_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID, data: dict[str, Any]) -> None:
        self.sent.append((tenant_id, user_id, data))


async def _items(client: httpx.AsyncClient, t: TenantFixture, who: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/me/notifications", params=params, headers=t.auth(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _add(pool: asyncpg.Pool, t: TenantFixture, who: str, n: int, prefix: str = "k") -> None:
    inbox = Inbox(pool, NoChannel())
    await inbox.add(
        t.tenant_id,
        [
            NewItem(t.users[who], f"{prefix}-{i}", "processing.completed", f"T{prefix}{i}", "b", "es")
            for i in range(n)
        ],
    )


async def test_items_reach_the_right_users_only(
    pool: asyncpg.Pool,
    push_settings: Settings,
    fcm_client: Any,
    make_tenant: Any,
    client: httpx.AsyncClient,
) -> None:
    a, b = await make_tenant(), await make_tenant(locale="en")
    channel = RecordingChannel()
    notifier = PushNotifier(pool, await fcm_client(), push_settings, inbox=Inbox(pool, channel))
    # A quarantine in A's project 1 (the investor of project 0 must not hear of it) ...
    upload = await seed_upload(
        pool, a.tenant_id, a.projects[1], a.users["field_worker"], file_name="muro.jpg", status="quarantined"
    )
    quarantine = event_for(
        EventType.UPLOAD_FAILED,
        a.tenant_id,
        a.projects[1],
        upload,
        a.users["field_worker"],
        UploadStatus.QUARANTINED,
        "infected",
    )
    await notifier.handle(quarantine)
    await notifier.handle(quarantine)  # redelivered: still one item each
    # ... and a forged event in B naming A's upload finds nothing in B.
    await notifier.handle(
        event_for(
            EventType.UPLOAD_FAILED,
            b.tenant_id,
            a.projects[1],
            upload,
            a.users["field_worker"],
            UploadStatus.QUARANTINED,
            "infected",
        )
    )
    fw = await _items(client, a, "field_worker")
    admin = await _items(client, a, "admin")
    assert [i["title"] for i in fw["items"]] == ["Archivo en cuarentena"]
    assert fw["items"][0]["body"] == "muro.jpg fue puesto en cuarentena: se detectó malware."
    assert fw["items"][0]["critical"] is True and fw["items"][0]["upload_id"] == str(upload)
    assert admin["items"][0]["title"].startswith("Archivo en cuarentena en Obra 1")
    assert admin["items"][0]["critical"] is False
    assert fw["unread"] == 1 and admin["unread"] == 1
    for who in ("investor", "outsider"):
        assert (await _items(client, a, who))["items"] == []
    for who in ("admin", "field_worker", "investor", "outsider"):
        assert (await _items(client, b, who))["items"] == []
    # Published once per new item, to A's two users only.
    assert sorted((tid, uid) for tid, uid, _ in channel.sent) == sorted(
        [(a.tenant_id, a.users["field_worker"]), (a.tenant_id, a.users["admin"])]
    )
    assert all(d["type"] == "inbox.item" and d["unread"] == 1 for _, _, d in channel.sent)
    # Nobody else can read, mark or archive the item: other user, other tenant.
    item = fw["items"][0]["id"]
    for t, who in ((a, "admin"), (a, "investor"), (b, "admin"), (b, "field_worker")):
        headers = t.auth(who)
        assert (
            await client.post(f"/api/v1/me/notifications/{item}/read", headers=headers)
        ).status_code == 404
        assert (await client.delete(f"/api/v1/me/notifications/{item}", headers=headers)).status_code == 404
    assert (await _items(client, a, "field_worker"))["unread"] == 1
    # Row-level security: B's transaction does not even see A's rows.
    async with tenant_transaction(pool, b.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM inbox_items WHERE upload_id = $1", upload) == 0


async def test_read_read_all_archive_and_count(
    pool: asyncpg.Pool, client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    t = tenant
    await _add(pool, t, "field_worker", 3)
    await _add(pool, t, "investor", 2)
    first = await _items(client, t, "field_worker")
    assert first["unread"] == 3 and [i["read"] for i in first["items"]] == [False] * 3
    newest = first["items"][0]["id"]
    read = await client.post(f"/api/v1/me/notifications/{newest}/read", headers=t.auth())
    assert read.status_code == 200 and read.json() == {"unread": 2}
    again = await client.post(f"/api/v1/me/notifications/{newest}/read", headers=t.auth())
    assert again.json() == {"unread": 2}  # idempotent
    unread = await _items(client, t, "field_worker", unread=1)
    assert newest not in [i["id"] for i in unread["items"]] and len(unread["items"]) == 2
    count = await client.get("/api/v1/me/notifications/unread-count", headers=t.auth())
    assert count.json() == {"unread": 2}
    everything = await client.post("/api/v1/me/notifications/read-all", headers=t.auth())
    assert everything.json() == {"marked": 2, "unread": 0}
    assert (await _items(client, t, "investor"))["unread"] == 2  # the other user's stay unread
    archived = await client.delete(f"/api/v1/me/notifications/{newest}", headers=t.auth())
    assert archived.status_code == 204
    assert newest not in [i["id"] for i in (await _items(client, t, "field_worker"))["items"]]
    assert (await client.delete(f"/api/v1/me/notifications/{newest}", headers=t.auth())).status_code == 404
    # Bad input: clear 4xx.
    for params, status, code in (
        ({"limit": "0"}, 400, "invalid_query"),
        ({"cursor": "nope"}, 404, "invalid_cursor"),
    ):
        bad = await client.get("/api/v1/me/notifications", params=params, headers=t.auth())
        assert bad.status_code == status and bad.json()["error"]["code"] == code
    assert (await client.post("/api/v1/me/notifications/x/read", headers=t.auth())).status_code == 404
    assert (await client.get("/api/v1/me/notifications")).status_code == 401


async def test_cursor_pages_are_stable_under_inserts(
    pool: asyncpg.Pool, client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    t = tenant
    await _add(pool, t, "field_worker", 25, "old")
    page1 = await _items(client, t, "field_worker", limit=10)
    await _add(pool, t, "field_worker", 7, "new")  # arrive while the client pages
    page2 = await _items(client, t, "field_worker", limit=10, cursor=page1["next_cursor"])
    await _add(pool, t, "field_worker", 3, "newer")
    page3 = await _items(client, t, "field_worker", limit=10, cursor=page2["next_cursor"])
    titles = [i["title"] for p in (page1, page2, page3) for i in p["items"]]
    assert titles == [f"Told{i}" for i in range(24, -1, -1)]  # each once, in order, none new
    assert page3["next_cursor"] is None
    fresh = await _items(client, t, "field_worker", limit=10)
    assert [i["title"] for i in fresh["items"]][:3] == ["Tnewer2", "Tnewer1", "Tnewer0"]


async def test_openapi_lists_the_inbox(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/v1/me/notifications"]) == {"get"}
    assert set(paths["/api/v1/me/notifications/{item_id}"]) == {"delete"}
    assert set(paths["/api/v1/me/notifications/{item_id}/read"]) == {"post"}
    assert set(paths["/api/v1/me/notifications/read-all"]) == {"post"}
