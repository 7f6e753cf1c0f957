"""Several server instances on one Redis, and the broker's Redis going away under
connected clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.events import Event, EventType
from core.status import UploadStatus
from devstack.process import free_port
from devstack.redis import EmbeddedRedis
from tests.conftest import insert_upload as make_upload
from tests.realtime.test_js_sdk import sns_publish
from tests.realtime.wsclient import WsClient


async def test_client_on_b_receives_event_consumed_by_a(
    stack: Any, server_process: Any, make_tenant: Any, pool: Any
) -> None:
    url_a = server_process(events_consumer_enabled=True)
    url_b = server_process(events_consumer_enabled=False)  # B never reads the queue
    t = await make_tenant()
    upload_id = await make_upload(pool, t)
    client = await WsClient.open(url_b)
    await client.connect(t.tokens["field_worker"])
    await client.call("subscribe", {"channel": f"upload:{upload_id}"})
    event = Event.new(
        EventType.UPLOAD_COMPLETED,
        tenant_id=t.tenant_id,
        project_id=t.projects[0],
        upload_id=upload_id,
        user_id=t.users["field_worker"],
        status=UploadStatus.UPLOADED,
    )
    await asyncio.to_thread(sns_publish, stack, event)
    (push,) = await client.publications(1, wait=60)
    assert push["channel"] == f"upload:{upload_id}"
    assert push["pub"]["data"]["id"] == str(event.id)
    assert push["pub"]["data"]["upload"]["status"] == "uploaded"
    await client.close()
    assert url_a != url_b


async def test_broker_redis_restart_resumes_or_tells_clients_to_recover(
    rt_server: Any, make_tenant: Any, tmp_path: Path
) -> None:
    broker_redis = EmbeddedRedis(tmp_path / "broker-redis", port=free_port(), durable=False)
    broker_redis.start()
    try:
        server = rt_server(realtime_broker_url=broker_redis.url)
        t = await make_tenant()
        channel = f"project:{t.projects[0]}"
        clients = [await WsClient.open(server.ws_url) for _ in range(3)]
        epochs = []
        for c in clients:
            await c.connect(t.tokens["admin"])
            epochs.append((await c.call("subscribe", {"channel": channel}))["subscribe"]["epoch"])

        async def hub_publish(n: int) -> int:
            from server.realtime.channels import parse_channel

            position = await server.node.publish_data(
                t.tenant_id, parse_channel(channel), orjson.dumps({"n": n})
            )
            return position.offset

        await server.run(hub_publish(1))
        for c in clients:
            assert (await c.publications(1))[0]["pub"]["data"] == {"n": 1}

        broker_redis.stop()
        with pytest.raises(Exception):  # noqa: B017 - publishing fails loudly while Redis is down
            await server.run(hub_publish(2))
        broker_redis.start()  # same port, empty: history and epochs are gone

        # The stream came back with a new epoch: history cannot fill the gap, so every client
        # is told "insufficient state" (unsubscribe push 2500: resubscribe and recover); none
        # gets a publication of the new epoch as if it followed its old position, none hangs.
        outcomes: list[str] = []
        for c in clients:
            while True:
                await server.run(hub_publish(3))
                message = await c.next(wait=10)
                push = message.get("push", {})
                assert "pub" not in push, "a publication of the new epoch on the old position"
                if "unsubscribe" in push:
                    assert push["channel"] == channel
                    assert push["unsubscribe"] == {"code": 2500, "reason": "insufficient state"}
                    outcomes.append("recover")
                    break
        assert len(outcomes) == 3
        # A client told to recover resubscribes: its old position is unrecoverable (new epoch).
        again = clients[0]
        sub = (
            await again.call(
                "subscribe", {"channel": channel, "recover": True, "offset": 1, "epoch": epochs[0]}
            )
        )["subscribe"]
        assert sub["recovered"] is False and sub["epoch"] != epochs[0]
        await server.run(hub_publish(4))
        (push,) = await again.publications(1)
        assert push["pub"]["data"] == {"n": 4} and push["pub"]["offset"] == sub["offset"] + 1
        for c in clients:
            await c.close()
    finally:
        broker_redis.stop()
