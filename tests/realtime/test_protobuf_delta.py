"""The ``centrifuge-protobuf`` subprotocol and Fossil delta, with the stock centrifuge-python
SDK over real sockets: Protobuf connects, subscribes, receives and recovers; a
``delta: "fossil"`` subscription is negotiated, its publications travel as deltas smaller
than the payloads (seen on the wire by a raw client) and the SDK decodes them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import centrifuge
import orjson
import pytest
from websockets.asyncio.client import connect

from server.realtime.codec import delimited, split_delimited
from server.realtime.fossil import create_delta
from server.realtime.proto import centrifugo_client_pb2 as pb
from tests.realtime.conftest import publish


def progress(upload: str, n: int, status: str = "uploading") -> bytes:
    """A realistic upload publication (the event plus the upload's document)."""
    return orjson.dumps(
        {
            "version": 1,
            "id": f"0b7c54d6-3f0e-4a43-9d1e-{n:012d}",
            "type": "upload.progress",
            "upload_id": upload,
            "status": status,
            "occurred_at": f"2026-12-01T12:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "data": {"bytes_done": n * 5_242_880, "bytes_total": 104_857_600, "part": n},
            "upload": {
                "upload_id": upload,
                "file_name": "fachada-norte-piso-3.jpg",
                "content_type": "image/jpeg",
                "status": status,
                "size": 104_857_600,
                "version": n + 2,
            },
        }
    )


@dataclass
class Seen:
    pubs: list[tuple[int, Any]] = field(default_factory=list)
    subscribed: list[centrifuge.SubscribedContext] = field(default_factory=list)


class Recorder(centrifuge.SubscriptionEventHandler):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        self.seen.pubs.append((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        self.seen.subscribed.append(ctx)


async def until(predicate: Any, what: str, limit: float = 20) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - the SDK's handlers set no event to wait on
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), limit)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def test_sdk_over_protobuf_subscribes_receives_and_recovers(
    rt_server: Any, make_tenant: Any, channel_broker: Any
) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    seen = Seen()
    client = centrifuge.Client(server.ws_url, token=t.tokens["field_worker"], use_protobuf=True)
    sub = client.new_subscription(channel, events=Recorder(seen), recoverable=True, positioned=True)
    try:
        await sub.subscribe()
        await client.connect()
        await sub.ready(10)
        first = [await publish(channel_broker, t.tenant_id, channel, progress("u1", n)) for n in range(3)]
        await until(lambda: len(seen.pubs) == 3, "the first publications")

        # the connection drops: the server ends it, advising a reconnect; meanwhile more
        await server.run(server.node.disconnect_user(t.tenant_id, t.users["field_worker"]))
        missed = [await publish(channel_broker, t.tenant_id, channel, progress("u1", n)) for n in range(3, 8)]
        await until(lambda: len(seen.pubs) == 8, "the recovered publications")
        assert [offset for offset, _ in seen.pubs] == first + missed  # nothing missing, no duplicate
        assert [orjson.loads(data)["data"]["part"] for _, data in seen.pubs] == list(range(8))
        assert len(seen.subscribed) == 2 and seen.subscribed[1].was_recovering
        assert seen.subscribed[1].recovered is True
        history = await sub.history(limit=-1)
        assert [pub.offset for pub in history.publications] == first + missed
    finally:
        await client.disconnect()


async def raw_delta_frames(
    url: str, token: str, channel: str, *, binary: bool, got: asyncio.Queue[Any]
) -> None:
    """A raw client subscribing with ``delta: "fossil"``: puts each publication push it
    receives (its size on the wire, whether it is a delta) on ``got``."""
    subprotocols: Any = ["centrifuge-protobuf"] if binary else None
    async with connect(url, subprotocols=subprotocols) as ws:
        if binary:
            cmds = [
                pb.Command(id=1, connect=pb.ConnectRequest(token=token)),
                pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=channel, delta="fossil")),
            ]
            await ws.send(b"".join(delimited(c) for c in cmds))
        else:
            await ws.send(
                orjson.dumps({"id": 1, "connect": {"token": token}}).decode()
                + "\n"
                + orjson.dumps({"id": 2, "subscribe": {"channel": channel, "delta": "fossil"}}).decode()
            )
        while True:
            frame = await ws.recv()
            if binary:
                assert isinstance(frame, bytes)
                for raw in split_delimited(frame):
                    reply = pb.Reply()
                    reply.ParseFromString(raw)
                    if reply.id == 2:
                        await got.put(("subscribed", reply.subscribe.delta))
                    elif reply.HasField("push") and reply.push.HasField("pub"):
                        await got.put(("pub", len(raw), reply.push.pub.delta, reply.push.pub.data))
            else:
                assert isinstance(frame, str)
                for line in frame.split("\n"):
                    reply = orjson.loads(line)
                    if reply.get("id") == 2:
                        await got.put(("subscribed", reply["subscribe"].get("delta", False)))
                    elif "pub" in reply.get("push", {}):
                        pub = reply["push"]["pub"]
                        await got.put(("pub", len(line.encode()), pub.get("delta", False), pub["data"]))


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_fossil_delta_is_negotiated_smaller_and_decoded_by_the_sdk(
    rt_server: Any, make_tenant: Any, channel_broker: Any, use_protobuf: bool
) -> None:
    server = rt_server()
    t = await make_tenant()
    channel = f"project:{t.projects[0]}"
    seen = Seen()
    client = centrifuge.Client(server.ws_url, token=t.tokens["field_worker"], use_protobuf=use_protobuf)
    sub = client.new_subscription(
        channel, events=Recorder(seen), recoverable=True, positioned=True, delta=centrifuge.DeltaType.FOSSIL
    )
    got: asyncio.Queue[Any] = asyncio.Queue()
    raw = asyncio.create_task(
        raw_delta_frames(server.ws_url, t.tokens["field_worker"], channel, binary=use_protobuf, got=got)
    )
    try:
        await sub.subscribe()
        await client.connect()
        await sub.ready(10)
        assert await asyncio.wait_for(got.get(), 10) == ("subscribed", True)
        payloads = [progress("u7", n) for n in range(12)] + [progress("u7", 12, "uploaded")]
        for data in payloads:
            await publish(channel_broker, t.tenant_id, channel, data)
        await until(lambda: len(seen.pubs) == len(payloads), "the delta publications")
        decoded = [data if isinstance(data, dict) else orjson.loads(data) for _, data in seen.pubs]
        assert decoded == [orjson.loads(data) for data in payloads]  # the SDK applied every delta

        frames = [await asyncio.wait_for(got.get(), 10) for _ in payloads]
        assert frames[0][2] is False  # the first after subscribing is full
        assert all(f[2] is True for f in frames[1:])  # then deltas against the previous
        for (_, size, _, data), full, previous in zip(frames[1:], payloads[1:], payloads, strict=False):
            assert size < len(full)  # the whole frame is smaller than the payload alone
            wire = data if isinstance(data, bytes) else data.encode()
            assert wire == create_delta(previous, full)
    finally:
        raw.cancel()
        await asyncio.gather(raw, return_exceptions=True)
        await client.disconnect()


async def test_unknown_delta_format_is_a_bad_request(rt_server: Any, tenant: Any) -> None:
    server = rt_server()
    async with connect(server.ws_url) as ws:
        await ws.send(orjson.dumps({"id": 1, "connect": {"token": tenant.tokens["field_worker"]}}).decode())
        await ws.recv()
        channel = f"project:{tenant.projects[0]}"
        await ws.send(orjson.dumps({"id": 2, "subscribe": {"channel": channel, "delta": "xdelta"}}).decode())
        reply = orjson.loads(await ws.recv())
        assert reply["error"]["code"] == 107
