"""Centrifugo client protocol v2, JSON flavour: frames, commands, replies and codes.

A client frame is one WebSocket text message holding one or more JSON commands separated
by ``\\n``. A command is ``{"id": N, "<method>": {...}}``; the empty object ``{}`` is the
client's pong. Replies echo ``id``; pushes have none. Codes follow centrifugal/centrifuge
(``errors.go``, ``disconnect.go``): 3000–3499 ask the client to reconnect, 3500–3999 not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

MAX_COMMAND_ID = 2**32 - 1

KNOWN_METHODS = frozenset(
    {
        "connect",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "presence_stats",
        "history",
        "ping",
        "send",
        "rpc",
        "refresh",
        "sub_refresh",
    }
)


class ErrorCode(IntEnum):
    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


_ERROR_MESSAGES = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
}


class ReplyError(Exception):
    """An error returned in the reply to one command; the connection stays open."""

    def __init__(self, code: ErrorCode, message: str | None = None, *, temporary: bool = False) -> None:
        self.code = code
        self.message = message or _ERROR_MESSAGES[code]
        self.temporary = temporary
        super().__init__(f"{int(code)} {self.message}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.temporary:
            out["temporary"] = True
        return out


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        return self.code < 3500 or self.code >= 5000 or 4000 <= self.code < 4500


# Reconnect-advised (3000–3499).
CONNECTION_CLOSED = Disconnect(3000, "connection closed")
SHUTDOWN = Disconnect(3001, "shutdown")
SERVER_ERROR = Disconnect(3004, "internal server error")
EXPIRED = Disconnect(3005, "connection expired")
SLOW = Disconnect(3008, "slow")
WRITE_ERROR = Disconnect(3009, "write error")
INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
FORCE_RECONNECT = Disconnect(3011, "force reconnect")
NO_PONG = Disconnect(3012, "no pong")
# Terminal (3500–3999).
INVALID_TOKEN = Disconnect(3500, "invalid token")
BAD_REQUEST = Disconnect(3501, "bad request")
STALE = Disconnect(3502, "stale")
FORCE_NO_RECONNECT = Disconnect(3503, "force disconnect")
CONNECTION_LIMIT = Disconnect(3504, "connection limit")
CHANNEL_LIMIT = Disconnect(3505, "channel limit")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A server unsubscribe push (centrifugal/centrifuge ``unsubscribe.go``): codes below
    2500 leave the subscription unsubscribed, 2500 and above make the client resubscribe
    (recovering from its last position)."""

    code: int
    reason: str


UNSUBSCRIBE_SERVER = Unsubscribe(2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT = Unsubscribe(2500, "insufficient state")


class ProtocolViolation(Exception):
    """The frame cannot be read as protocol: the connection ends with ``disconnect``."""

    def __init__(self, detail: str, disconnect: Disconnect = BAD_REQUEST) -> None:
        super().__init__(detail)
        self.detail = detail
        self.disconnect = disconnect


@dataclass(frozen=True, slots=True)
class Command:
    """One client command. ``method`` is ``None`` for the empty pong command; an unknown
    method is kept by name so that its reply can say 104."""

    id: int
    method: str | None
    params: dict[str, Any]


def _command(raw: Any) -> Command:
    if not isinstance(raw, dict):
        raise ProtocolViolation("command is not a JSON object")
    cid = raw.get("id", 0)
    if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid <= MAX_COMMAND_ID:
        raise ProtocolViolation("command id must be an unsigned 32-bit integer")
    methods = [key for key in raw if key != "id"]
    if not methods:
        if cid:
            raise ProtocolViolation("command has an id but no method")
        return Command(0, None, {})
    if len(methods) > 1:
        raise ProtocolViolation("command has more than one method")
    method = methods[0]
    params = raw[method]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolViolation(f"{method}: parameters must be an object")
    if cid == 0 and method != "send":
        raise ProtocolViolation(f"{method}: command id required")
    return Command(cid, method, params)


command_from_dict = _command  # one decoded command (the Protobuf codec builds the same dict)


def decode_frame(text: str) -> list[Command]:
    """The commands of one text frame, in order, or :class:`ProtocolViolation`."""
    commands: list[Command] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation("frame is not JSON") from exc
        commands.append(_command(raw))
    if not commands:
        raise ProtocolViolation("empty frame")
    return commands


# --- replies and pushes (text, ready for the socket) ---

PING = "{}"


def reply(command_id: int, method: str, result: dict[str, Any]) -> str:
    return orjson.dumps({"id": command_id, method: result}).decode()


def error_reply(command_id: int, error: ReplyError) -> str:
    return orjson.dumps({"id": command_id, "error": error.to_dict()}).decode()


def publication_dict(data: bytes, offset: int) -> dict[str, Any]:
    """A ``Publication`` with ``data`` already JSON (embedded without re-encoding)."""
    return {"data": orjson.Fragment(data), "offset": offset}


def publication_push(channel: str, data: bytes, offset: int) -> str:
    return orjson.dumps({"push": {"channel": channel, "pub": publication_dict(data, offset)}}).decode()


def unsubscribe_push(channel: str, code: int, reason: str) -> str:
    return orjson.dumps(
        {"push": {"channel": channel, "unsubscribe": {"code": code, "reason": reason}}}
    ).decode()


def disconnect_push(disconnect: Disconnect) -> str:
    return orjson.dumps(
        {"push": {"disconnect": {"code": disconnect.code, "reason": disconnect.reason}}}
    ).decode()
