"""Frame decoding and reply encoding (pure), including a hypothesis fuzz."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.realtime import protocol as p


def test_frame_with_several_commands_in_order() -> None:
    frame = (
        '{"connect":{"token":"t","name":"js"},"id":1}\n'
        '{"subscribe":{"channel":"CH","positioned":true,"recoverable":true,"flag":1},"id":2}'
    )
    commands = p.decode_frame(frame)
    assert [(c.id, c.method) for c in commands] == [(1, "connect"), (2, "subscribe")]
    assert commands[1].params["channel"] == "CH"


def test_empty_object_is_pong() -> None:
    assert p.decode_frame("{}") == [p.Command(0, None, {})]


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2]",
        '{"id":1}',
        '{"id":-1,"connect":{}}',
        '{"id":"1","connect":{}}',
        '{"id":1,"connect":{},"subscribe":{}}',
        '{"id":1,"subscribe":"CH"}',
        '{"subscribe":{"channel":"CH"}}',
        "",
        "\n\n",
    ],
)
def test_malformed_frames_are_protocol_violations(frame: str) -> None:
    with pytest.raises(p.ProtocolViolation) as info:
        p.decode_frame(frame)
    assert info.value.disconnect == p.BAD_REQUEST
    assert not info.value.disconnect.reconnect


def test_unknown_method_is_kept_for_a_104_reply() -> None:
    (command,) = p.decode_frame('{"id":7,"teleport":{}}')
    assert command.method == "teleport" and command.method not in p.KNOWN_METHODS


def test_replies_and_pushes() -> None:
    assert orjson.loads(p.reply(3, "subscribe", {"epoch": "e"})) == {"id": 3, "subscribe": {"epoch": "e"}}
    error = p.ReplyError(p.ErrorCode.PERMISSION_DENIED)
    assert orjson.loads(p.error_reply(4, error)) == {
        "id": 4,
        "error": {"code": 103, "message": "permission denied"},
    }
    assert orjson.loads(p.publication_push("project:x", b'{"a":1}', 9)) == {
        "push": {"channel": "project:x", "pub": {"data": {"a": 1}, "offset": 9}}
    }
    temporary = p.ReplyError(p.ErrorCode.INTERNAL, temporary=True).to_dict()
    assert temporary == {"code": 100, "message": "internal server error", "temporary": True}


def test_disconnect_codes_follow_centrifuge() -> None:
    assert (p.SHUTDOWN.code, p.SLOW.code, p.INSUFFICIENT_STATE.code, p.NO_PONG.code) == (
        3001,
        3008,
        3010,
        3012,
    )
    assert all(d.reconnect for d in (p.SHUTDOWN, p.SLOW, p.EXPIRED, p.INSUFFICIENT_STATE, p.NO_PONG))
    assert not any(d.reconnect for d in (p.INVALID_TOKEN, p.BAD_REQUEST, p.FORCE_NO_RECONNECT))
    # Unsubscribe codes (centrifuge unsubscribe.go): below 2500 final, 2500+ resubscribe.
    assert p.UNSUBSCRIBE_SERVER == p.Unsubscribe(2000, "server unsubscribe")
    assert p.UNSUBSCRIBE_INSUFFICIENT == p.Unsubscribe(2500, "insufficient state")
    assert orjson.loads(p.unsubscribe_push("tenant:x", 2500, "insufficient state")) == {
        "push": {"channel": "tenant:x", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
command_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-5, 2**33) | st.text(max_size=3) | st.none(),
        "connect": json_values,
        "subscribe": json_values,
        "history": json_values,
        "bogus": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(command_like.map(lambda c: orjson.dumps(c).decode()) | st.text(max_size=40), max_size=4))
def test_fuzzed_frames_decode_or_violate(lines: list[str]) -> None:
    frame = "\n".join(lines)
    try:
        commands = p.decode_frame(frame)
    except p.ProtocolViolation:
        return
    for command in commands:
        assert 0 <= command.id <= p.MAX_COMMAND_ID
        assert isinstance(command.params, dict)
