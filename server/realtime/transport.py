"""Transports: how protocol frames travel on one connection. The session logic
(:mod:`server.realtime.session`) only sees :class:`Transport`; the WebSocket framing (JSON
commands and replies separated by ``\\n`` in text messages) lives here, so other
transports (HTTP streaming, SSE, Protobuf) can be added beside it."""

from __future__ import annotations

import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect


class TransportClosed(Exception):
    """The peer went away (or the connection broke)."""


class BadFrame(Exception):
    """A frame this transport's protocol cannot carry (e.g. binary on the JSON protocol)."""


class Transport(Protocol):
    async def receive(self) -> str:
        """The next frame's text; :class:`TransportClosed` or :class:`BadFrame`."""
        ...

    async def write(self, frames: list[str]) -> None:
        """Send ``frames`` (replies and pushes, in order); :class:`TransportClosed`."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with a disconnect code; never raises."""
        ...


class WebSocketTransport:
    """Centrifugo's JSON protocol over a Starlette WebSocket."""

    __slots__ = ("peer_gone", "ws")

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.peer_gone = False

    async def accept(self) -> None:
        await self.ws.accept()

    async def receive(self) -> str:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:  # RuntimeError: after close
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc
        if message["type"] == "websocket.disconnect":
            self.peer_gone = True
            raise TransportClosed("peer closed")
        text = message.get("text")
        if text is None:
            raise BadFrame("binary frame on the JSON protocol")
        return str(text)

    async def write(self, frames: list[str]) -> None:
        try:
            await self.ws.send_text(frames[0] if len(frames) == 1 else "\n".join(frames))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.peer_gone = True
            raise TransportClosed(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        if self.peer_gone:
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
