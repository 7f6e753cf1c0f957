"""Bidirectional emulation (``/connection/http_stream``, ``/connection/sse``, ``/emulation``)
with the stock centrifuge-js SDK in Node whose WebSocket endpoint refuses connections: it
falls back, receives an upload's publications end to end (SNS → consumer → stream), loses
its stream (a TCP proxy cuts it), reconnects and recovers. Plus the refusals: another
user's session id, a stream without a valid token; and Fossil delta with centrifuge-js."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from core.events import Event, EventType
from core.status import UploadStatus
from devstack.process import free_port
from tests.conftest import insert_upload as make_upload
from tests.realtime.conftest import publish
from tests.realtime.jsclient import JsClient
from tests.realtime.test_js_sdk import sns_publish
from tests.realtime.test_protobuf_delta import progress
from tests.resilience.proxy import TcpProxy


def server_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("kind", ["http_stream", "sse"])
async def test_sdk_falls_back_receives_end_to_end_and_recovers_a_lost_stream(
    kind: str, stack: Any, rt_server: Any, make_tenant: Any, pool: Any, channel_broker: Any
) -> None:
    server = rt_server()
    proxy = TcpProxy(("127.0.0.1", server_port(server.url))).start()
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    channel = f"project:{t.projects[0]}"
    path = "/connection/http_stream" if kind == "http_stream" else "/connection/sse"
    transports = [
        {
            "transport": "websocket",
            "endpoint": f"ws://127.0.0.1:{free_port()}/connection/websocket",
        },  # refused
        {"transport": kind, "endpoint": proxy.url + path},
    ]
    js = await JsClient.start(
        server.ws_url,
        t.tokens["field_worker"],
        HUB_TRANSPORTS=orjson.dumps(transports).decode(),
        HUB_EMULATION=proxy.url + "/emulation",
    )
    try:
        await js.send("subscribe", channel=channel)
        await js.send("connect")
        connected = await js.wait_for("connected", wait=30)
        assert connected["transport"] == kind
        await js.wait_for("subscribed")

        def event(etype: EventType, status: UploadStatus) -> Event:
            return Event.new(
                etype,
                tenant_id=t.tenant_id,
                project_id=t.projects[0],
                upload_id=upload_id,
                user_id=t.users["field_worker"],
                status=status,
            )

        pubs = []
        for step in (
            event(EventType.UPLOAD_COMPLETED, UploadStatus.UPLOADED),
            event(EventType.PROCESSING_COMPLETED, UploadStatus.PROCESSING),
        ):
            await asyncio.to_thread(sns_publish, stack, step)
            pubs += await js.collect("publication", 1, wait=30)
        assert [p["data"]["upload"]["status"] for p in pubs] == ["uploaded", "processing"]

        proxy.refuse()  # the stream is cut mid-flight; reconnects are refused for now
        await js.wait_for("connecting")
        missed = [
            await publish(channel_broker, t.tenant_id, channel, orjson.dumps({"n": i})) for i in range(5)
        ]
        proxy.forward()
        again = await js.wait_for("connected", wait=30)
        assert again["transport"] == kind
        subscribed = await js.wait_for("subscribed")
        assert subscribed["wasRecovering"] is True and subscribed["recovered"] is True
        recovered = await js.collect("publication", 5)
        assert [int(p["offset"]) for p in recovered] == missed  # nothing missing, no duplicate
        assert int(pubs[-1]["offset"]) == missed[0] - 1
        live = await publish(channel_broker, t.tenant_id, channel, b'{"n":"live"}')
        (after,) = await js.collect("publication", 1)
        assert int(after["offset"]) == live
    finally:
        await js.stop()
        proxy.close()


async def _open_stream(client: httpx.AsyncClient, url: str, token: str) -> tuple[Any, Any, dict[str, Any]]:
    """An http_stream whose connect reply was read: (response context, line iterator, reply)."""
    body = orjson.dumps({"id": 1, "connect": {"token": token}})
    ctx = client.stream("POST", url + "/connection/http_stream", content=body)
    response = await ctx.__aenter__()
    assert response.status_code == 200
    assert response.headers["x-accel-buffering"] == "no"
    assert "no-store" in response.headers["cache-control"]
    lines = response.aiter_lines()
    reply = orjson.loads(await asyncio.wait_for(lines.__anext__(), 10))
    return ctx, lines, reply


async def test_another_users_session_id_is_refused(rt_server: Any, make_tenant: Any) -> None:
    server = rt_server()
    t, other = await make_tenant(), await make_tenant()
    async with httpx.AsyncClient(timeout=10) as client:
        ctx, lines, reply = await _open_stream(client, server.url, t.tokens["field_worker"])
        try:
            session, node = reply["connect"]["session"], reply["connect"]["node"]
            assert len(session) >= 32 and node
            subscribe = orjson.dumps({"id": 2, "subscribe": {"channel": f"project:{t.projects[0]}"}}).decode()
            body = {"session": session, "node": node, "data": subscribe}
            emulation = server.url + "/emulation"
            for intruder in (other.tokens["admin"], t.tokens["investor"]):  # another tenant; same tenant
                refused = await client.post(
                    emulation, json=body, headers={"Authorization": f"Bearer {intruder}"}
                )
                assert refused.status_code == 403
            bad = await client.post(emulation, json=body, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401
            unknown = await client.post(emulation, json={**body, "session": "x" * 32})
            assert unknown.status_code == 404
            assert (await client.post(emulation, content=b"{not json")).status_code == 400
            # the owner's own command goes through, and only it was run
            mine = await client.post(
                emulation, json=body, headers={"Authorization": f"Bearer {t.tokens['field_worker']}"}
            )
            assert mine.status_code == 200
            answer = orjson.loads(await asyncio.wait_for(lines.__anext__(), 10))
            assert answer["id"] == 2 and "subscribe" in answer
        finally:
            await ctx.__aexit__(None, None, None)


async def test_emulation_requests_reaching_another_instance_are_forwarded(
    rt_server: Any, make_tenant: Any
) -> None:
    """The stream on instance A, its /emulation requests on instance B (another worker or
    task behind the balancer): B forwards them through the broker; A checks the caller."""
    a, b = rt_server(), rt_server()
    t, other = await make_tenant(), await make_tenant()
    async with httpx.AsyncClient(timeout=10) as client:
        ctx, lines, reply = await _open_stream(client, a.url, t.tokens["field_worker"])
        try:
            session, node = reply["connect"]["session"], reply["connect"]["node"]

            def command(cid: int) -> dict[str, Any]:
                sub = (
                    {"id": cid, "subscribe": {"channel": f"project:{t.projects[0]}"}}
                    if cid == 2
                    else {"id": cid, "ping": {}}
                )
                return {"session": session, "node": node, "data": orjson.dumps(sub).decode()}

            intruder = {"Authorization": f"Bearer {other.tokens['admin']}"}
            assert (
                await client.post(b.url + "/emulation", json=command(7), headers=intruder)
            ).status_code == 200
            owner = {"Authorization": f"Bearer {t.tokens['field_worker']}"}
            assert (
                await client.post(b.url + "/emulation", json=command(2), headers=owner)
            ).status_code == 200
            answer = orjson.loads(await asyncio.wait_for(lines.__anext__(), 10))
            assert answer["id"] == 2 and "subscribe" in answer  # forwarded and run on A
            assert (await client.post(b.url + "/emulation", json=command(3))).status_code == 200
            answer = orjson.loads(await asyncio.wait_for(lines.__anext__(), 10))
            assert answer == {"id": 3, "ping": {}}  # the intruder's command 7 was never run
        finally:
            await ctx.__aexit__(None, None, None)


@pytest.mark.parametrize("kind", ["http_stream", "sse"])
async def test_a_stream_without_a_valid_token_gets_the_centrifugo_code(
    kind: str, rt_server: Any, tenant: Any
) -> None:
    server = rt_server()
    async with httpx.AsyncClient(timeout=10) as client:
        for token in ("not-a-jwt", ""):
            command = orjson.dumps({"id": 1, "connect": {"token": token}})
            if kind == "http_stream":
                response = await client.post(server.url + "/connection/http_stream", content=command)
                replies = [orjson.loads(line) for line in response.text.splitlines() if line]
            else:
                url = server.url + "/connection/sse?cf_connect=" + quote(command.decode())
                response = await client.get(url)
                assert response.headers["content-type"].startswith("text/event-stream")
                replies = [orjson.loads(line[len("data: ") :]) for line in response.text.splitlines() if line]
            assert response.status_code == 200
            assert replies == [{"push": {"disconnect": {"code": 3500, "reason": "invalid token"}}}]
        missing = await client.get(server.url + "/connection/sse")
        assert missing.status_code == 400


async def test_js_sdk_fossil_delta_is_negotiated_smaller_and_decoded(
    rt_server: Any, make_tenant: Any, channel_broker: Any
) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    js = await JsClient.start(server.ws_url, t.tokens["investor"], HUB_FRAMES="1")
    try:
        await js.send("subscribe", channel=channel, delta="fossil")
        await js.send("connect")
        await js.wait_for("subscribed")
        subscribe_reply = [
            orjson.loads(line)
            for f in js.seen
            if f["event"] == "frame"
            for line in f["text"].split("\n")
            if '"subscribe"' in line
        ]
        assert subscribe_reply and subscribe_reply[0]["subscribe"]["delta"] is True
        payloads = [progress("u9", n) for n in range(10)]
        for data in payloads:
            await publish(channel_broker, t.tenant_id, channel, data)
        pubs = await js.collect("publication", len(payloads))
        assert [p["data"] for p in pubs] == [orjson.loads(d) for d in payloads]  # the SDK applied the deltas
        frames = [  # (bytes on the wire, the push) — the writer may batch replies in a message
            (len(line.encode()), orjson.loads(line)["push"]["pub"])
            for f in js.seen
            if f["event"] == "frame"
            for line in f["text"].split("\n")
            if '"pub"' in line
        ]
        assert len(frames) == len(payloads)
        assert "delta" not in frames[0][1]
        for (size, pub), full in zip(frames[1:], payloads[1:], strict=True):
            assert pub["delta"] is True and size < len(full)
    finally:
        await js.stop()
