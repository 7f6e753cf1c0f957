"""Authorisation that follows the user (issue 11): on ``refresh`` to a lower role, and
when a user leaves a project or their role is lowered, every subscription they may no
longer hold ends with a server unsubscribe push (2000), on every server process; and
``disconnect_user`` reaches every process (through the broker's control channel)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import orjson

from server import admin
from server.auth import mint_token
from server.realtime.control import ControlPublisher
from tests.conftest import insert_upload
from tests.realtime.conftest import ROOT, publish, settings_env
from tests.realtime.wsclient import WsClient

SERVER_UNSUBSCRIBE = {"code": 2000, "reason": "server unsubscribe"}


async def unsubscribed(client: WsClient, n: int, wait: float = 20) -> dict[str, dict[str, Any]]:
    """The next ``n`` unsubscribe pushes, by channel (publications on the way are kept out)."""
    got: dict[str, dict[str, Any]] = {}
    while len(got) < n:
        push = (await client.next(wait)).get("push", {})
        if "unsubscribe" in push:
            got[push["channel"]] = push["unsubscribe"]
    return got


async def test_refresh_to_a_lower_role_ends_what_it_may_not_hold(
    rt_server: Any, make_tenant: Any, channel_broker: Any
) -> None:
    server = rt_server()
    t = await make_tenant()
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    member, other = f"project:{t.projects[0]}", f"project:{t.projects[1]}"
    mine, tenant = f"user:{t.users['admin']}", f"tenant:{t.tenant_id}"
    for channel in (tenant, member, other, mine):
        assert "subscribe" in await client.call("subscribe", {"channel": channel})
    lower = mint_token(t.settings, user_id=t.users["admin"], tenant_id=t.tenant_id, role="field_worker")
    reply = await client.call("refresh", {"token": lower})
    assert reply["refresh"]["expires"] is True
    # Admins read every project and the tenant channel; a field worker only its projects.
    assert await unsubscribed(client, 2) == {tenant: SERVER_UNSUBSCRIBE, other: SERVER_UNSUBSCRIBE}
    # What it still holds keeps flowing, and what it lost cannot be taken again.
    offset = await publish(channel_broker, t.tenant_id, member, b'{"still":1}')
    await publish(channel_broker, t.tenant_id, tenant, b'{"lost":1}')
    (push,) = await client.publications(1)
    assert push == {"channel": member, "pub": {"data": {"still": 1}, "offset": offset}}
    assert (await client.call("subscribe", {"channel": tenant}))["error"]["code"] == 103
    await client.close()


async def _run_cli(t: Any, *args: str) -> dict[str, Any]:
    env = {**os.environ, **settings_env(t.settings)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        "--json",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = orjson.loads(out)
    return result


def _two_servers(server_process: Any) -> list[str]:
    # Long pings: the test's clients read only when it looks (they answer pings then).
    return [server_process(events_consumer_enabled=False, realtime_ping_seconds=60) for _ in range(2)]


async def _subscribed_on_both(urls: list[str], token: str, channels: list[str]) -> list[WsClient]:
    clients = []
    for url in urls:
        client = await WsClient.open(url)
        await client.connect(token)
        for channel in channels:
            assert "subscribe" in await client.call("subscribe", {"channel": channel}), channel
        clients.append(client)
    return clients


async def test_leaving_a_project_ends_its_subscriptions_on_both_servers(
    server_process: Any, make_tenant: Any, pool: Any, channel_broker: Any
) -> None:
    t = await make_tenant()
    upload_id = await insert_upload(pool, t)
    worker = t.users["field_worker"]
    project, upload, mine = f"project:{t.projects[0]}", f"upload:{upload_id}", f"user:{worker}"
    urls = _two_servers(server_process)
    clients = await _subscribed_on_both(urls, t.tokens["field_worker"], [project, upload, mine])
    # The admin CLI, as an operator would run it, in its own process.
    removed = await _run_cli(
        t, "project", "remove-member", "--project", str(t.projects[0]), "--user", str(worker)
    )
    assert removed["user_id"] == str(worker)
    for client in clients:
        assert await unsubscribed(client, 2) == {project: SERVER_UNSUBSCRIBE, upload: SERVER_UNSUBSCRIBE}
    offset = await publish(channel_broker, t.tenant_id, mine, b'{"yours":1}')
    for client in clients:
        (push,) = await client.publications(1)
        assert push["channel"] == mine and push["pub"]["offset"] == offset
        assert (await client.call("subscribe", {"channel": project}))["error"]["code"] == 103
        await client.close()


async def test_a_lowered_role_ends_admin_channels_on_both_servers(
    server_process: Any, make_tenant: Any, pool: Any, channel_broker: Any
) -> None:
    t = await make_tenant()
    member, other, tenant = f"project:{t.projects[0]}", f"project:{t.projects[1]}", f"tenant:{t.tenant_id}"
    urls = _two_servers(server_process)
    clients = await _subscribed_on_both(urls, t.tokens["admin"], [member, other, tenant])
    # Another tenant's user with the same role change is not touched (and cannot touch us).
    bystander_tenant = await make_tenant()
    bystander = await WsClient.open(urls[0])
    await bystander.connect(bystander_tenant.tokens["admin"])
    await bystander.call("subscribe", {"channel": f"tenant:{bystander_tenant.tenant_id}"})
    await admin.set_role(
        pool, t.tenant_id, t.users["admin"], "investor", notify=ControlPublisher(channel_broker)
    )
    for client in clients:
        # The token still says admin: the server holds the session to the lower role, and
        # neither a refresh nor a new connection with that old token brings it back.
        assert await unsubscribed(client, 2) == {tenant: SERVER_UNSUBSCRIBE, other: SERVER_UNSUBSCRIBE}
        assert (await client.call("subscribe", {"channel": tenant}))["error"]["code"] == 103
        assert "refresh" in await client.call("refresh", {"token": t.tokens["admin"]})
        assert (await client.call("subscribe", {"channel": tenant}))["error"]["code"] == 103
    late = await WsClient.open(urls[1])
    await late.connect(t.tokens["admin"])
    assert (await late.call("subscribe", {"channel": tenant}))["error"]["code"] == 103
    await late.close()
    offset = await publish(channel_broker, t.tenant_id, member, b'{"member":1}')
    for client in clients:
        (push,) = await client.publications(1)
        assert push["channel"] == member and push["pub"]["offset"] == offset
        await client.close()
    bystander_offset = await publish(
        channel_broker, bystander_tenant.tenant_id, f"tenant:{bystander_tenant.tenant_id}", b"{}"
    )
    (push,) = await bystander.publications(1)
    assert push["pub"]["offset"] == bystander_offset
    await bystander.close()


async def test_disconnect_user_reaches_every_server(
    server_process: Any, make_tenant: Any, channel_broker: Any
) -> None:
    t = await make_tenant()
    urls = _two_servers(server_process)
    clients = await _subscribed_on_both(urls, t.tokens["investor"], [])
    others = await _subscribed_on_both(urls, t.tokens["field_worker"], [])
    await ControlPublisher(channel_broker).disconnect_user(
        t.tenant_id, t.users["investor"], 3011, "force reconnect"
    )
    for client in clients:
        assert (await client.closed()).code == 3011
    # Unknown or malformed control messages are ignored; other users stay connected.
    await channel_broker.publish_control(b"not json")
    await ControlPublisher(channel_broker).disconnect_user(t.tenant_id, uuid.uuid4(), 3011, "nobody")
    for client in others:
        assert "ping" in await client.call("ping", {})
        await client.close()


async def test_stock_sdk_refreshing_to_a_lower_role_is_unsubscribed(rt_server: Any, make_tenant: Any) -> None:
    """centrifuge-python refreshes its token on its own (``get_token`` before ``ttl``)."""
    import centrifuge

    server = rt_server(realtime_ping_seconds=60)
    t = await make_tenant()
    user = t.users["admin"]
    short = mint_token(t.settings, user_id=user, tenant_id=t.tenant_id, role="admin", ttl_seconds=3)
    lower = mint_token(t.settings, user_id=user, tenant_id=t.tenant_id, role="investor")
    ended: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    class Events(centrifuge.SubscriptionEventHandler):
        def __init__(self, channel: str) -> None:
            self.channel = channel

        async def on_unsubscribed(self, ctx: centrifuge.UnsubscribedContext) -> None:
            await ended.put((self.channel, ctx.code))

    async def get_token() -> str:
        return lower

    client = centrifuge.Client(server.ws_url, token=short, get_token=get_token)
    tenant, member = f"tenant:{t.tenant_id}", f"project:{t.projects[0]}"
    subs = [client.new_subscription(name, events=Events(name)) for name in (tenant, member)]
    try:
        for sub in subs:
            await sub.subscribe()
        await client.connect()
        for sub in subs:
            await sub.ready(10)
        assert await asyncio.wait_for(ended.get(), 30) == (tenant, 2000)
        assert subs[0].state == centrifuge.SubscriptionState.UNSUBSCRIBED
        assert subs[1].state == centrifuge.SubscriptionState.SUBSCRIBED  # investors read member projects
    finally:
        await client.disconnect()


async def test_membership_and_role_changes_stay_in_their_tenant(make_tenant: Any, pool: Any) -> None:
    import pytest

    t, other = await make_tenant(), await make_tenant()
    with pytest.raises(admin.AdminError, match="not a member"):  # another tenant's project
        await admin.remove_member(pool, other.projects[0], t.users["field_worker"], notify=None)
    with pytest.raises(admin.AdminError, match="not found"):  # a user of another tenant
        await admin.set_role(pool, other.tenant_id, t.users["admin"], "investor", notify=None)
    with pytest.raises(admin.AdminError, match="role must be"):
        await admin.set_role(pool, t.tenant_id, t.users["admin"], "owner", notify=None)
    with pytest.raises(admin.AdminError, match="not found"):
        await admin.remove_member(pool, uuid.uuid4(), t.users["field_worker"], notify=None)
    await admin.remove_member(pool, t.projects[0], t.users["field_worker"], notify=None)
    with pytest.raises(admin.AdminError, match="not a member"):  # twice
        await admin.remove_member(pool, t.projects[0], t.users["field_worker"], notify=None)
    from core.db import tenant_transaction

    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        role = await conn.fetchval("SELECT role FROM users WHERE user_id = $1", t.users["admin"])
    assert role == "admin"  # nothing changed by the attempts from the other tenant
