"""Transports: how protocol frames travel on one connection. The session logic
(:mod:`server.realtime.session`) only sees :class:`Transport`; the WebSocket framing (JSON
commands and replies separated by ``\\n`` in text messages) lives here, so other
transports (HTTP streaming, SSE, Protobuf) can be added beside it."""

from __future__ import annotations

import contextlib
from typing import Protocol

from starlette.types import Receive, Scope, Send

from server.realtime.codec import JSON, PROTOBUF, Codec, Frame

__all__ = ["BadFrame", "Frame", "Transport", "TransportClosed", "WebSocketTransport"]

PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


class TransportClosed(Exception):
    """The peer went away (or the connection broke)."""


class BadFrame(Exception):
    """A frame this transport's protocol cannot carry (e.g. binary on the JSON protocol)."""


class Transport(Protocol):
    codec: Codec  # how its frames encode commands and replies
    session_id: str  # bidirectional emulation: the id ``/emulation`` requests name; "" otherwise
    node_id: str

    async def receive(self) -> Frame:
        """The next frame; :class:`TransportClosed` or :class:`BadFrame`."""
        ...

    async def write(self, frames: list[Frame]) -> None:
        """Send ``frames`` (replies and pushes, in order); :class:`TransportClosed`."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with a disconnect code; never raises."""
        ...


class WebSocketTransport:
    """Centrifugo's protocol over an ASGI WebSocket: JSON in text messages, or Protobuf
    in binary ones when the client asks for the ``centrifuge-protobuf`` subprotocol.

    It speaks ASGI directly (the server's ``receive`` and ``send``), with no Starlette
    ``WebSocket`` in between: that object, its header views and its coroutine layers
    were held by every idle connection for nothing (issue 16: memory per connection)."""

    __slots__ = ("_receive", "_send", "codec", "node_id", "peer_gone", "session_id")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.peer_gone = False
        self.session_id = ""
        self.node_id = ""
        wanted = PROTOBUF_SUBPROTOCOL in scope.get("subprotocols", ())
        self.codec: Codec = PROTOBUF if wanted else JSON

    async def accept(self) -> bool:
        """Complete the handshake; ``False`` when the client left before it."""
        message = await self._receive()
        if message["type"] != "websocket.connect":
            self.peer_gone = True
            return False
        await self._send(
            {"type": "websocket.accept", "subprotocol": PROTOBUF_SUBPROTOCOL if self.codec.binary else None}
        )
        return True

    async def receive(self) -> Frame:
        try:
            message = await self._receive()
        except (OSError, RuntimeError) as exc:  # RuntimeError: after close
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc
        kind = message["type"]
        if kind == "websocket.disconnect":
            self.peer_gone = True
            raise TransportClosed("peer closed")
        if kind != "websocket.receive":
            raise BadFrame(f"unexpected ASGI message {kind}")
        if self.codec.binary:
            data = message.get("bytes")
            if data is None:
                raise BadFrame("text frame on the Protobuf protocol")
            return bytes(data)
        text = message.get("text")
        if text is None:
            raise BadFrame("binary frame on the JSON protocol")
        return str(text)

    async def write(self, frames: list[Frame]) -> None:
        if self.peer_gone:
            raise TransportClosed("peer closed")
        if self.codec.binary:
            message = {"type": "websocket.send", "bytes": b"".join(frames)}  # type: ignore[arg-type]
        else:
            text = frames[0] if len(frames) == 1 else "\n".join(frames)  # type: ignore[arg-type]
            message = {"type": "websocket.send", "text": text}
        try:
            await self._send(message)
        except (OSError, RuntimeError) as exc:  # OSError: uvicorn's ClientDisconnected
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        if self.peer_gone:
            return
        self.peer_gone = True  # nothing is sent after the close frame
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
