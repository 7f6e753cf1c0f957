"""Centrifugo's bidirectional emulation: for clients whose WebSocket is blocked (site
routers, carrier and corporate proxies), the stock SDKs' ``http_stream`` and ``sse``
transports.

- ``POST /connection/http_stream``: the body is the connect command (JSON, or
  varint-delimited Protobuf with ``Content-Type: application/octet-stream``); the response
  streams the session's replies and pushes (JSON lines, or varint-delimited ``Reply``).
- ``GET /connection/sse?cf_connect=<connect command JSON>``: the same as Server-Sent
  Events (JSON only), one ``data:`` event per reply.
- ``POST /emulation``: ``{"session", "node", "data"}`` (or a Protobuf
  ``EmulationRequest``) carries the commands the client sends afterwards into its session.

A stream is one :class:`~server.realtime.session.Session` behind a :class:`StreamTransport`:
the same JWT check, channel authorisation, recovery, ping/pong (pings are data on the
stream, so buffering proxies and idle timeouts see traffic), slow-client bound, tenant caps,
metrics and shutdown as the WebSocket. Responses say ``X-Accel-Buffering: no`` and
``Cache-Control: no-store``. The session id the connect reply names is a 192-bit secret
known only to the stream's reader; an ``/emulation`` request naming it with another user's
bearer token is refused (403), an unknown one is 404 (the SDK then reconnects).

Several processes or instances: a request for a stream held elsewhere (its ``node`` is not
this process's) is forwarded through the broker's control channel, as Centrifugo does, and
the process holding the stream feeds it (after the same caller check) — so ``buildpeer
serve --workers N`` and instances behind a load balancer need no stickiness.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from google.protobuf.message import DecodeError
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from server.auth import AuthError
from server.openapi import other_protocol
from server.realtime import protocol as p
from server.realtime.broker import BrokerUnavailable
from server.realtime.codec import JSON, PROTOBUF, Codec, Frame
from server.realtime.node import Node
from server.realtime.proto import centrifugo_client_pb2 as pb
from server.realtime.session import Session
from server.realtime.transport import TransportClosed

log = logging.getLogger(__name__)

HTTP_STREAM_PATH = "/connection/http_stream"
SSE_PATH = "/connection/sse"
EMULATION_PATH = "/emulation"
MAX_WAITING_COMMANDS = 64  # frames delivered by /emulation the session has not read yet
_STREAM_HEADERS = [
    (b"cache-control", b"private, no-cache, no-store, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-accel-buffering", b"no"),  # nginx and compatible proxies: do not buffer the stream
]
_CONTENT_TYPES = {
    "json": b"application/json",
    "protobuf": b"application/octet-stream",
    "sse": b"text/event-stream",
}


class StreamTransport:
    """One streaming HTTP response carrying a session's frames; the frames it reads come
    from ``/emulation`` requests (:meth:`feed`)."""

    __slots__ = ("_ended", "_frames", "_gone", "_send", "_sse", "_wake", "codec", "node_id", "session_id")

    def __init__(self, send: Send, codec: Codec, *, sse: bool, node_id: str) -> None:
        self._send = send
        self.codec = codec
        self._sse = sse
        self.node_id = node_id
        self.session_id = secrets.token_urlsafe(24)
        self._frames: deque[Frame] = deque()
        self._wake = asyncio.Event()
        self._gone = False
        self._ended = False

    def feed(self, frame: Frame) -> bool:
        """A frame from ``/emulation``; ``False`` when too many wait unread."""
        if len(self._frames) >= MAX_WAITING_COMMANDS:
            return False
        self._frames.append(frame)
        self._wake.set()
        return True

    def peer_closed(self) -> None:
        self._gone = True
        self._wake.set()

    async def receive(self) -> Frame:
        while True:
            if self._frames:
                return self._frames.popleft()
            if self._gone:
                raise TransportClosed("stream closed by the client")
            self._wake.clear()
            await self._wake.wait()

    def _body(self, frames: list[Frame]) -> bytes:
        if self.codec.binary:
            return b"".join(frame for frame in frames if isinstance(frame, bytes))
        texts = [frame for frame in frames if isinstance(frame, str)]
        if self._sse:
            return "".join(f"data: {text}\n\n" for text in texts).encode()
        return ("\n".join(texts) + "\n").encode()

    async def write(self, frames: list[Frame]) -> None:
        if self._gone or self._ended:
            raise TransportClosed("stream closed")
        try:
            await self._send({"type": "http.response.body", "body": self._body(frames), "more_body": True})
        except (OSError, RuntimeError) as exc:
            self._gone = True
            raise TransportClosed(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        """The disconnect push (the stream's close code), then the end of the response."""
        if self._gone or self._ended:
            return
        with contextlib.suppress(TransportClosed):
            await self.write([self.codec.disconnect_push(p.Disconnect(code, reason))])
        await self.end()

    async def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._gone:
            return
        with contextlib.suppress(Exception):
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


_FORWARD = b"buildpeer-emulation\n"  # control messages carrying /emulation commands


class EmulationSessions:
    """The streams of this process by session id (for ``/emulation``), and the commands
    other processes forward to them through the broker."""

    def __init__(self) -> None:
        self.node_id = str(uuid.uuid4())
        self._sessions: dict[str, Session] = {}
        self._nodes: set[int] = set()

    def attach(self, node: Node) -> None:
        """Take forwarded commands from ``node``'s control channel (once per node)."""
        if id(node) not in self._nodes:
            self._nodes.add(id(node))
            node.control_handlers.append(self.on_control)

    @staticmethod
    def forward_message(node_id: str, session_id: str, caller: str, frame: Frame) -> bytes:
        binary = isinstance(frame, bytes)
        data = base64.b64encode(frame).decode() if isinstance(frame, bytes) else frame
        body = {"node": node_id, "session": session_id, "caller": caller, "binary": binary, "data": data}
        return _FORWARD + orjson.dumps(body)

    def on_control(self, data: bytes) -> bool:
        if not data.startswith(_FORWARD):
            return False
        try:
            body = orjson.loads(data[len(_FORWARD) :])
            if body["node"] != self.node_id:
                return True  # another process's stream
            session = self._sessions.get(body["session"])
            frame: Frame = base64.b64decode(body["data"]) if body["binary"] else str(body["data"])
            caller = str(body["caller"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("emulation: bad forwarded command: %s", exc)
            return True
        if session is None or session.closed or session.codec.binary != isinstance(frame, bytes):
            return True
        owner = session.principal
        if caller and (owner is None or caller != f"{owner.tenant_id}:{owner.user_id}"):
            log.warning("emulation: forwarded command for another user's session refused")
            return True
        transport = session.transport
        if isinstance(transport, StreamTransport):
            transport.feed(frame)
        return True

    def adder(self, session_id: str) -> Callable[[Session], None]:
        def add(session: Session) -> None:
            self._sessions[session_id] = session

        return add

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def __len__(self) -> int:
        return len(self._sessions)


# --- plain ASGI helpers ---


async def _respond(send: Send, status: int, body: bytes = b"", content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *_STREAM_HEADERS[:1]]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise TransportClosed("client went away")
        body += message.get("body", b"")
        if len(body) > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _node(scope: Scope) -> Node | None:
    node: Node | None = getattr(scope["app"].state, "realtime", None)
    return node


async def _watch_disconnect(receive: Receive, transport: StreamTransport) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            transport.peer_closed()
            return


class StreamEndpoint:
    """``/connection/http_stream`` (``sse=False``) or ``/connection/sse`` (``sse=True``)."""

    def __init__(self, sessions: EmulationSessions, *, sse: bool) -> None:
        self.sessions = sessions
        self.sse = sse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        node = _node(scope)
        if node is None:
            await _respond(send, 503, b"real-time hub not running")
            return
        limit = node.config.max_frame_bytes
        codec: Codec = JSON
        if self.sse:
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("cf_connect", [])
            if len(values) != 1 or not values[0] or len(values[0].encode()) > limit:
                await _respond(send, 400, b"cf_connect: one connect command (JSON) required")
                return
            first: Frame = values[0]
        else:
            try:
                raw = await _read_body(receive, limit)
            except _TooLarge:
                await _respond(send, 413, b"connect command too large")
                return
            except TransportClosed:
                return
            if _header(scope, b"content-type").startswith("application/octet-stream"):
                codec, first = PROTOBUF, raw
            else:
                try:
                    first = raw.decode()
                except UnicodeDecodeError:
                    await _respond(send, 400, b"the connect command is not UTF-8 JSON")
                    return
            if not raw:
                await _respond(send, 400, b"the body must be the connect command")
                return
        content_type = _CONTENT_TYPES["sse" if self.sse else codec.name]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type), *_STREAM_HEADERS],
            }
        )
        self.sessions.attach(node)
        transport = StreamTransport(send, codec, sse=self.sse, node_id=self.sessions.node_id)
        transport.feed(first)
        watcher = asyncio.create_task(_watch_disconnect(receive, transport), name="stream-disconnect")
        try:
            await node.serve(transport, on_session=self.sessions.adder(transport.session_id))
        finally:
            self.sessions.remove(transport.session_id)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await transport.end()


class EmulationEndpoint:
    """``POST /emulation``: a client's commands into its stream's session."""

    def __init__(self, sessions: EmulationSessions) -> None:
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        node = _node(scope)
        if node is None:
            await _respond(send, 503, b"real-time hub not running")
            return
        try:
            raw = await _read_body(receive, node.config.max_frame_bytes + 1024)
        except _TooLarge:
            await _respond(send, 413, b"request too large")
            return
        except TransportClosed:
            return
        binary = _header(scope, b"content-type").startswith("application/octet-stream")
        parsed = _parse_request(raw, binary=binary)
        if parsed is None:
            await _respond(send, 400, b"not an emulation request")
            return
        session_id, node_id, frame = parsed
        session = self.sessions.get(session_id)
        if session is None and node_id and node_id != self.sessions.node_id:
            await self._forward(node, scope, send, session_id, node_id, frame)
            return
        if session is None or session.closed:
            # not a stream of this process (gone, or never): the SDK reconnects
            await _respond(send, 404, b"unknown session")
            return
        if session.codec.binary != binary:
            await _respond(send, 400, b"the request's encoding is not the stream's")
            return
        refusal = await _caller_refusal(node, scope, session)
        if refusal is not None:
            log.warning("emulation: %s for session of client %s", refusal.decode(), session.client_id)
            await _respond(send, 403 if refusal.startswith(b"not") else 401, refusal)
            return
        transport = session.transport
        assert isinstance(transport, StreamTransport)
        if not transport.feed(frame):
            await _respond(send, 429, b"too many commands waiting")
            return
        await _respond(send, 200)

    async def _forward(
        self, node: Node, scope: Scope, send: Send, session_id: str, node_id: str, frame: Frame
    ) -> None:
        """The stream is another process's: its commands go there through the broker."""
        caller = ""
        authorization = _header(scope, b"authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token:
                    raise AuthError("unauthorized", "bearer token expected")
                principal = await node.verify_token(token.strip())
            except AuthError:
                await _respond(send, 401, b"unauthorized: invalid token")
                return
            caller = f"{principal.tenant_id}:{principal.user_id}"
        try:
            await node.broker.publish_control(
                EmulationSessions.forward_message(node_id, session_id, caller, frame)
            )
        except BrokerUnavailable:
            await _respond(send, 503, b"broker unavailable")
            return
        await _respond(send, 200)


def _parse_request(raw: bytes, *, binary: bool) -> tuple[str, str, Frame] | None:
    if binary:
        request = pb.EmulationRequest()
        try:
            request.ParseFromString(raw)
        except DecodeError:
            return None
        if not request.session or not request.data:
            return None
        return request.session, request.node, bytes(request.data)
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    session_id, data, node_id = body.get("session"), body.get("data"), body.get("node", "")
    if not isinstance(session_id, str) or not session_id or not isinstance(node_id, str):
        return None
    if isinstance(data, dict):
        data = orjson.dumps(data).decode()
    if not isinstance(data, str) or not data:
        return None
    return session_id, node_id, data


async def _caller_refusal(node: Node, scope: Scope, session: Session) -> bytes | None:
    """Why the caller may not speak for ``session`` (``None``: it may). A caller that
    shows a bearer token must be the session's user; the session id is the secret."""
    authorization = _header(scope, b"authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return b"unauthorized: bearer token expected"
    try:
        caller = await node.verify_token(token.strip())
    except AuthError:
        return b"unauthorized: invalid token"
    owner = session.principal
    if owner is None or (owner.tenant_id, owner.user_id) != (caller.tenant_id, caller.user_id):
        return b"not your session"
    return None


def routes() -> list[Route]:
    sessions = EmulationSessions()
    protocol = "Centrifugo client protocol v2, bidirectional emulation"
    return [
        Route(
            HTTP_STREAM_PATH, other_protocol(StreamEndpoint(sessions, sse=False), protocol), methods=["POST"]
        ),
        Route(SSE_PATH, other_protocol(StreamEndpoint(sessions, sse=True), protocol), methods=["GET"]),
        Route(EMULATION_PATH, other_protocol(EmulationEndpoint(sessions), protocol), methods=["POST"]),
    ]
