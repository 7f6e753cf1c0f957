"""Hypothesis against a live server: Protobuf frames on the ``centrifuge-protobuf``
WebSocket (well-formed ``Command`` messages with fuzzed fields, and arbitrary bytes) and
``/emulation`` bodies (JSON and Protobuf) into a live http_stream session. Every frame gets
replies or a protocol close code, every body a 2xx/4xx (never 5xx), and the server keeps
serving both."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from server.realtime.codec import delimited, split_delimited
from server.realtime.proto import centrifugo_client_pb2 as pb

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=20)
requests = st.one_of(
    st.builds(
        lambda c, r, o, e, d: pb.Command(
            subscribe=pb.SubscribeRequest(channel=c, recover=r, offset=o, epoch=e, delta=d)
        ),
        st.sampled_from(["project:", "upload:x", "tenant:"]) | text,
        st.booleans(),
        u64,
        text,
        st.sampled_from(["", "fossil"]) | text,
    ),
    st.builds(lambda c: pb.Command(unsubscribe=pb.UnsubscribeRequest(channel=c)), text),
    st.builds(
        lambda c, lim, r: pb.Command(history=pb.HistoryRequest(channel=c, limit=lim, reverse=r)),
        text,
        st.integers(-(2**31), 2**31 - 1),
        st.booleans(),
    ),
    st.builds(lambda c: pb.Command(presence_stats=pb.PresenceStatsRequest(channel=c)), text),
    st.builds(lambda t: pb.Command(refresh=pb.RefreshRequest(token=t)), text),
    st.builds(lambda t: pb.Command(connect=pb.ConnectRequest(token=t)), text),
    st.builds(lambda d: pb.Command(publish=pb.PublishRequest(channel="x", data=d)), st.binary(max_size=20)),
    st.just(pb.Command(ping=pb.PingRequest())),
    st.just(pb.Command()),
)


def with_id(command: pb.Command, cid: int) -> bytes:
    command.id = cid
    return delimited(command)


frames = st.lists(st.builds(with_id, requests, u32) | st.binary(max_size=40), min_size=1, max_size=4).map(
    b"".join
)
PROBE = 4_000_000_000
PROTOBUF = [Subprotocol("centrifuge-protobuf")]


def _probe_answered(frame: bytes) -> bool:
    for raw in split_delimited(frame):
        reply = pb.Reply()
        reply.ParseFromString(raw)
        if reply.id == PROBE:
            return True
    return False


def test_fuzzed_protobuf_frames_never_break_the_server(rt_server: Any, tenant: Any) -> None:
    server = rt_server()
    hello = delimited(pb.Command(id=1, connect=pb.ConnectRequest(token=tenant.tokens["field_worker"])))
    probe = delimited(pb.Command(id=PROBE, ping=pb.PingRequest()))

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def check(frame: bytes) -> None:
        with connect(server.ws_url, subprotocols=PROTOBUF, open_timeout=10, close_timeout=2) as ws:
            ws.send(hello)
            first = ws.recv(timeout=10)
            assert isinstance(first, bytes)
            try:
                ws.send(frame)
                ws.send(probe)
                while True:
                    got = ws.recv(timeout=10)
                    assert isinstance(got, bytes)
                    if _probe_answered(got):
                        return
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and 3000 <= exc.rcvd.code < 4000, exc

    check()
    with connect(server.ws_url, subprotocols=PROTOBUF) as ws:
        ws.send(hello)
        reply = pb.Reply()
        reply.ParseFromString(split_delimited(bytes(ws.recv(timeout=10)))[0])  # type: ignore[arg-type]
        assert reply.id == 1 and reply.connect.client


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def test_fuzzed_emulation_bodies_never_break_the_server(rt_server: Any, tenant: Any) -> None:
    server = rt_server()
    token = tenant.tokens["field_worker"]
    with httpx.Client(timeout=10) as client:
        stream = client.stream(
            "POST",
            server.url + "/connection/http_stream",
            content=orjson.dumps({"id": 1, "connect": {"token": token}}),
        )
        response = stream.__enter__()
        try:
            lines = response.iter_lines()
            session = orjson.loads(next(lines))["connect"]["session"]

            bodies = st.one_of(
                st.binary(max_size=60),
                st.builds(lambda d: orjson.dumps({"session": session, "data": d}), json_values),
                st.builds(lambda d: orjson.dumps({"session": session, "data": d}), st.text(max_size=60)),
                st.builds(lambda v: orjson.dumps(v), json_values),
            )

            @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
            @given(bodies, st.booleans())
            def check(body: bytes, binary: bool) -> None:
                headers = {"content-type": "application/octet-stream" if binary else "application/json"}
                got = client.post(server.url + "/emulation", content=body, headers=headers)
                assert 200 <= got.status_code < 500, (got.status_code, got.text)

            check()
        finally:
            stream.__exit__(None, None, None)

        # the server still serves a new stream, and /emulation into it
        stream = client.stream(
            "POST",
            server.url + "/connection/http_stream",
            content=orjson.dumps({"id": 1, "connect": {"token": token}}),
        )
        response = stream.__enter__()
        try:
            lines = response.iter_lines()
            session = orjson.loads(next(lines))["connect"]["session"]
            ping = orjson.dumps({"id": 9, "ping": {}}).decode()
            assert (
                client.post(server.url + "/emulation", json={"session": session, "data": ping}).status_code
                == 200
            )
            while True:
                line = next(lines)
                if line and orjson.loads(line).get("id") == 9:
                    break
        finally:
            stream.__exit__(None, None, None)
