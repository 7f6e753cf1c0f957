"""Transports: how protocol frames travel on one connection. The session logic
(:mod:`server.realtime.session`) only sees :class:`Transport`; the WebSocket framing (JSON
commands and replies separated by ``\\n`` in text messages) lives here, so other
transports (HTTP streaming, SSE, Protobuf) can be added beside it."""

from __future__ import annotations

import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

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
    """Centrifugo's protocol over a Starlette WebSocket: JSON in text messages, or Protobuf
    in binary ones when the client asks for the ``centrifuge-protobuf`` subprotocol."""

    __slots__ = ("codec", "node_id", "peer_gone", "session_id", "ws")

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.peer_gone = False
        self.session_id = ""
        self.node_id = ""
        offered = websocket.headers.get("sec-websocket-protocol", "")
        wanted = PROTOBUF_SUBPROTOCOL in (item.strip() for item in offered.split(","))
        self.codec: Codec = PROTOBUF if wanted else JSON

    async def accept(self) -> None:
        await self.ws.accept(subprotocol=PROTOBUF_SUBPROTOCOL if self.codec.binary else None)

    async def receive(self) -> Frame:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:  # RuntimeError: after close
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            self.peer_gone = True
            raise TransportClosed("peer closed")
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
        try:
            if self.codec.binary:
                await self.ws.send_bytes(b"".join(frames))  # type: ignore[arg-type]
            else:
                await self.ws.send_text(frames[0] if len(frames) == 1 else "\n".join(frames))  # type: ignore[arg-type]
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        if self.peer_gone:
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
