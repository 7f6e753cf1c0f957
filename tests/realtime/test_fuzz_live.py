"""Hypothesis-generated command frames against a live server: every frame gets replies or
a protocol close code (never an internal error), and the server keeps serving."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.realtime.protocol import KNOWN_METHODS

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
methods = st.sampled_from([*sorted(KNOWN_METHODS), "nope", ""])
params = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from(["project:", "upload:x", "user:", "tenant:"]) | st.text(max_size=20),
        "token": st.text(max_size=20),
        "recover": json_values,
        "offset": json_values,
        "epoch": json_values,
        "limit": json_values,
        "since": json_values,
    },
)
commands = st.builds(
    lambda cid, method, p: {"id": cid, method: p},
    st.integers(-1, 2**32 + 1) | st.text(max_size=2),
    methods,
    params | json_values,
)
frames = st.lists(
    commands.map(lambda c: orjson.dumps(c).decode()) | st.text(max_size=60), min_size=1, max_size=4
)


def test_fuzzed_frames_never_break_the_server(rt_server: Any, tenant: Any) -> None:
    server = rt_server()
    hello = orjson.dumps({"id": 1, "connect": {"token": tenant.tokens["field_worker"]}}).decode()
    probe = '{"id":4000000000,"ping":{}}'

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def check(lines: list[str]) -> None:
        with connect(server.ws_url, open_timeout=10, close_timeout=2) as ws:
            ws.send(hello)
            assert "connect" in orjson.loads(ws.recv(timeout=10))
            try:
                ws.send("\n".join(lines))
                ws.send(probe)
                while True:
                    frame = str(ws.recv(timeout=10))
                    if any(line and orjson.loads(line).get("id") == 4000000000 for line in frame.split("\n")):
                        return  # still serving this connection
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and 3000 <= exc.rcvd.code < 4000, exc

    check()
    with connect(server.ws_url) as ws:  # and new connections still work
        ws.send(hello)
        assert "connect" in orjson.loads(ws.recv(timeout=10))
