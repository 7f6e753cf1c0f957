"""The WebSocket endpoint over a real socket (uvicorn + the real app): connect, subscribe,
authorisation, tokens, protocol errors, timers, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from server.auth import mint_token
from tests.conftest import insert_upload
from tests.realtime.conftest import publish
from tests.realtime.wsclient import StalledClient, WsClient


async def test_connect_subscribe_and_receive(rt_server: Any, make_tenant: Any, channel_broker: Any) -> None:
    server = rt_server()
    t = await make_tenant()
    client = await WsClient.open(server.ws_url)
    reply = await client.connect(t.tokens["field_worker"])
    connect = reply["connect"]
    assert connect["client"] and connect["version"]
    assert connect["expires"] is True and 3500 <= connect["ttl"] <= 3600
    assert connect["ping"] == 2 and connect["pong"] is True
    channel = f"project:{t.projects[0]}"
    sub = (await client.call("subscribe", {"channel": channel, "recoverable": True, "positioned": True}))[
        "subscribe"
    ]
    assert sub["recoverable"] is True and sub["positioned"] is True and sub["epoch"]
    offset = await publish(channel_broker, t.tenant_id, channel, b'{"hello":1}')
    (push,) = await client.publications(1)
    assert push == {"channel": channel, "pub": {"data": {"hello": 1}, "offset": offset}}
    assert offset == sub["offset"] + 1
    await client.close()


async def test_permission_denied_across_tenants_and_roles(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t, other = await make_tenant(), await make_tenant()
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["investor"])

    async def code(channel: str) -> int | None:
        reply = await client.call("subscribe", {"channel": channel})
        return reply.get("error", {}).get("code")

    assert await code(f"project:{other.projects[0]}") == 103  # another tenant's project
    assert await code(f"project:{t.projects[1]}") == 103  # investor not a member
    assert await code(f"tenant:{t.tenant_id}") == 103  # admins only
    assert await code(f"user:{t.users['field_worker']}") == 103  # someone else
    assert await code(f"user:{other.users['investor']}") == 103
    assert await code("project:not-a-uuid") == 102
    assert await code("chat:general") == 102
    assert await code(f"project:{t.projects[0]}") is None  # member: allowed
    assert await code(f"user:{t.users['investor']}") is None
    assert await code(f"project:{t.projects[0]}") == 105  # already subscribed
    publish_reply = await client.call("publish", {"channel": f"project:{t.projects[0]}", "data": {"x": 1}})
    assert publish_reply["error"]["code"] == 103
    await client.close()

    admin = await WsClient.open(server.ws_url)
    await admin.connect(t.tokens["admin"])
    assert "subscribe" in await admin.call("subscribe", {"channel": f"tenant:{t.tenant_id}"})
    assert "subscribe" in await admin.call("subscribe", {"channel": f"project:{t.projects[1]}"})
    denied = await admin.call("subscribe", {"channel": f"tenant:{other.tenant_id}"})
    assert denied["error"]["code"] == 103
    denied = await admin.call("subscribe", {"channel": f"project:{other.projects[1]}"})
    assert denied["error"]["code"] == 103
    await admin.close()


async def test_tenants_with_the_same_channel_name_never_share_a_stream(
    rt_server: Any, make_tenant: Any, channel_broker: Any
) -> None:
    server = rt_server()
    t, other = await make_tenant(), await make_tenant()
    a = await WsClient.open(server.ws_url)
    await a.connect(t.tokens["admin"])
    await a.call("subscribe", {"channel": f"user:{t.users['admin']}"})
    # The other tenant publishes on a channel spelled the same (same id) in its own tenant.
    await publish(channel_broker, other.tenant_id, f"user:{t.users['admin']}", b'{"leak":true}')
    await publish(channel_broker, t.tenant_id, f"user:{t.users['admin']}", b'{"mine":true}')
    (push,) = await a.publications(1)
    assert push["pub"]["data"] == {"mine": True}
    await a.close()


async def test_expired_token_refused_and_invalid_token_closes(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t = await make_tenant()
    expired = mint_token(
        t.settings, user_id=t.users["admin"], tenant_id=t.tenant_id, role="admin", ttl_seconds=-60
    )
    client = await WsClient.open(server.ws_url)
    reply = await client.connect(expired)
    assert reply["error"]["code"] == 109
    await client.close()

    client = await WsClient.open(server.ws_url)
    await client.send_raw('{"id":1,"connect":{"token":"garbage"}}')
    closed = await client.closed()
    assert closed.code == 3500


async def test_refresh_extends_and_unrefreshed_session_is_closed(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t = await make_tenant()

    def token(ttl: int) -> str:
        return mint_token(
            t.settings,
            user_id=t.users["field_worker"],
            tenant_id=t.tenant_id,
            role="field_worker",
            ttl_seconds=ttl,
        )

    refreshed = await WsClient.open(server.ws_url)
    lapsing = await WsClient.open(server.ws_url)
    first_expiry = time.time() + 3
    assert (await refreshed.connect(token(3)))["connect"]["ttl"] <= 3
    assert (await lapsing.connect(token(3)))["connect"]["ttl"] <= 3
    reply = await refreshed.call("refresh", {"token": token(600)})
    assert reply["refresh"]["expires"] is True and reply["refresh"]["ttl"] > 500
    closed = await lapsing.closed(wait=15)
    assert closed.code == 3005  # connection expired: reconnect with a fresh token
    # the refreshed session outlived the first token
    while time.time() < first_expiry + 1:
        assert "ping" in await refreshed.call("ping", {})  # answers server pings meanwhile
        await asyncio.sleep(0.25)
    assert "ping" in await refreshed.call("ping", {})
    other_user = mint_token(t.settings, user_id=t.users["admin"], tenant_id=t.tenant_id, role="admin")
    await refreshed.command("refresh", {"token": other_user})
    assert (await refreshed.closed()).code == 3500
    await refreshed.close()


async def test_protocol_errors_and_server_stays_up(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server(realtime_max_frame_bytes=4096)
    t = await make_tenant()

    async def closes_with(frames: list[str | bytes]) -> int | None:
        client = await WsClient.open(server.ws_url)
        for frame in frames:
            await client.send_raw(frame)
        return (await client.closed()).code

    assert await closes_with(["{not json"]) == 3501
    assert await closes_with(['{"id":1,"subscribe":{"channel":"x"}}']) == 3501  # before connect
    assert await closes_with([b"\x00\x01binary"]) == 3501
    connect = orjson.dumps({"id": 1, "connect": {"token": t.tokens["admin"]}}).decode()
    assert await closes_with([connect, '{"id":2,"subscribe":{"channel":"' + "x" * 5000 + '"}}']) == 3501
    assert await closes_with([connect, connect.replace('"id":1', '"id":2')]) == 3501  # connect twice

    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    assert (await client.call("teleport", {}))["error"]["code"] == 104
    assert (await client.call("rpc", {"method": "x"}))["error"]["code"] == 108
    assert (await client.call("subscribe", {}))["error"]["code"] == 107
    assert (await client.call("subscribe", {"channel": f"project:{t.projects[0]}", "offset": -1}))["error"][
        "code"
    ] == 107
    assert (await client.call("history", {"channel": f"project:{t.projects[0]}"}))["error"]["code"] == 103
    await client.close()

    survivor = await WsClient.open(server.ws_url)
    assert "connect" in await survivor.connect(t.tokens["admin"])
    await survivor.close()


async def test_history_and_presence_stats(rt_server: Any, make_tenant: Any, channel_broker: Any) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    offsets = [await publish(channel_broker, t.tenant_id, channel, orjson.dumps({"n": i})) for i in range(5)]
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    sub = (await client.call("subscribe", {"channel": channel}))["subscribe"]
    history = (await client.call("history", {"channel": channel, "limit": -1}))["history"]
    assert [pub["offset"] for pub in history["publications"]] == offsets
    assert [pub["data"]["n"] for pub in history["publications"]] == list(range(5))
    assert history["epoch"] == sub["epoch"] and history["offset"] == offsets[-1]
    since = (
        await client.call(
            "history",
            {"channel": channel, "limit": 2, "since": {"offset": offsets[1], "epoch": sub["epoch"]}},
        )
    )["history"]
    assert [pub["offset"] for pub in since["publications"]] == offsets[2:4]
    wrong = await client.call(
        "history", {"channel": channel, "limit": 2, "since": {"offset": 1, "epoch": "nope"}}
    )
    assert wrong["error"]["code"] == 112
    stats = (await client.call("presence_stats", {"channel": channel}))["presence_stats"]
    second = await WsClient.open(server.ws_url)
    await second.connect(t.tokens["investor"])
    await second.call("subscribe", {"channel": channel})
    for _ in range(50):
        stats = (await client.call("presence_stats", {"channel": channel}))["presence_stats"]
        if stats == {"num_clients": 2, "num_users": 2}:
            break
        await asyncio.sleep(0.1)
    assert stats == {"num_clients": 2, "num_users": 2}
    await client.close()
    await second.close()


async def test_no_pong_disconnects(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server(realtime_ping_seconds=0.3, realtime_pong_timeout_seconds=0.3)
    t = await make_tenant()
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    # read raw frames without answering the pings
    while True:
        try:
            frame = await asyncio.wait_for(client.conn.recv(), 10)
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            break
        assert frame == "{}"
    assert code == 3012


async def test_never_connecting_is_stale(rt_server: Any) -> None:
    server = rt_server(realtime_ping_seconds=0.3)
    client = await WsClient.open(server.ws_url)
    assert (await client.closed()).code == 3502


async def test_slow_reader_is_disconnected_while_others_keep_receiving(
    rt_server: Any, make_tenant: Any, channel_broker: Any
) -> None:
    server = rt_server(realtime_max_queue_bytes=256 * 1024, realtime_ping_seconds=600)
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    slow = await StalledClient.open(server.ws_url)
    await slow.send(orjson.dumps({"id": 1, "connect": {"token": t.tokens["admin"]}}).decode())
    await slow.send(orjson.dumps({"id": 2, "subscribe": {"channel": channel}}).decode())
    fast = await WsClient.open(server.ws_url)
    await fast.connect(t.tokens["admin"])
    await fast.call("subscribe", {"channel": channel})
    # The slow client never reads. Publish far more than socket buffers and its queue hold.
    payload = orjson.dumps({"blob": "x" * 32_000})
    count = 600
    received = asyncio.create_task(fast.publications(count, wait=30))
    for _ in range(count):
        await publish(channel_broker, t.tenant_id, channel, payload)
    pushes = await received
    offsets = [push["pub"]["offset"] for push in pushes]
    assert len(set(offsets)) == count and offsets == sorted(offsets)  # the fast client got everything
    code, frames = await slow.drain_until_close()  # it reads again: the close frame is there
    assert code == 3008
    assert frames < count
    assert server.node.hub.count(t.tenant_id) == 1
    await fast.close()


async def test_shutdown_advises_reconnect(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t = await make_tenant()
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    await server.run(server.node.stop())
    assert (await client.closed()).code == 3001
    late = await WsClient.open(server.ws_url)
    assert (await late.closed()).code == 3001


async def test_disconnect_user_and_tenant_cap(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server(realtime_tenant_connection_limit=2)
    t = await make_tenant()
    a, b, c = [await WsClient.open(server.ws_url) for _ in range(3)]
    assert "connect" in await a.connect(t.tokens["investor"])
    assert "connect" in await b.connect(t.tokens["investor"])
    over = await c.connect(t.tokens["admin"])
    assert over["error"] == {"code": 106, "message": "tenant connection limit", "temporary": True}

    await server.run(server.node.disconnect_user(t.tenant_id, t.users["investor"]))
    assert (await a.closed()).code == 3011
    assert (await b.closed()).code == 3011
    await c.close()


async def test_a_client_that_falls_behind_gets_the_newest_state_of_an_upload(
    rt_server: Any, make_tenant: Any, channel_broker: Any, pool: Any
) -> None:
    """Status coalescing: once a client's queue is a quarter full, a newer state of the same
    upload supersedes the one still queued (no 3008 for it); a client that keeps up gets
    every publication (tests/realtime/test_broker_faults.py)."""
    from server.realtime.channels import parse_channel

    server = rt_server(realtime_max_queue_bytes=512 * 1024, realtime_ping_seconds=600)
    t = await make_tenant()
    channel = f"upload:{await insert_upload(pool, t)}"
    key = parse_channel(channel).broker_name(t.tenant_id)
    slow = await StalledClient.open(server.ws_url)
    await slow.send(orjson.dumps({"id": 1, "connect": {"token": t.tokens["admin"]}}).decode())
    await slow.send(orjson.dumps({"id": 2, "subscribe": {"channel": channel}}).decode())

    async def subscribed() -> bool:
        return bool(server.node.hub.subscribers(key))

    while not await server.run(subscribed()):  # noqa: ASYNC110 - state in another thread
        await asyncio.sleep(0.05)
    count, blob = 400, "x" * 8000  # 3.2 MB of states of one upload: far past the queue's bound
    for n in range(count):
        await channel_broker.publish(key, orjson.dumps({"n": n, "blob": blob}), key="upload-state")

    def has_last(lines: list[str]) -> bool:
        return any(f'"n":{count - 1},' in line for line in lines)

    lines = await slow.drain_texts(has_last)
    numbers = [orjson.loads(line)["push"]["pub"]["data"]["n"] for line in lines if '"pub"' in line]
    assert numbers == sorted(numbers) and numbers[-1] == count - 1
    assert len(numbers) < count  # superseded states were dropped, the newest arrived
