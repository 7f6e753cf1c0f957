"""A minimal WebSocket client for load generation: one :class:`asyncio.Protocol` per
connection, frames parsed in ``data_received`` and handed to a synchronous callback — no
task, no coroutine wake-up, no queue per message. The benchmarks use it for both servers
they compare, so the load generator costs a few microseconds per message and the figures
are the server's, not the clients' (a full client library per connection spent more CPU
than the server under test on two cores).

Enough of RFC 6455 for a benchmark: the opening handshake (no extensions, so no
compression), unfragmented server frames (continuations are joined), text frames out with
an all-zero mask (valid, and XOR with zero is free), pings answered, close echoed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OnText = Callable[["RawWebSocket", str], None]


class RawWebSocket(asyncio.Protocol):
    __slots__ = ("_buf", "_frag", "_open", "closed", "on_open", "on_text", "request", "transport")

    def __init__(self, request: bytes, on_open: Callable[[RawWebSocket], None], on_text: OnText) -> None:
        self.request = request
        self.on_open = on_open
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._open = False
        self._frag: list[bytes] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        data = text.encode()
        size = len(data)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        assert self.transport is not None
        self.transport.write(header + b"\x00\x00\x00\x00" + data)  # zero mask: payload as is

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                raise ConnectionError(f"handshake refused: {status!r}")
            del buf[: end + 4]
            self._open = True
            self.on_open(self)
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size = b1 & 0x7F
            head = 2
            if size == 126:
                if n - pos < 4:
                    break
                size = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif size == 127:
                if n - pos < 10:
                    break
                size = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if n - pos < head + size:
                break
            payload = bytes(buf[pos + head : pos + head + size])
            pos += head + size
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode in (0x0, 0x1, 0x2):
            self._frag.append(payload)
            if not fin:
                return
            whole = b"".join(self._frag) if len(self._frag) > 1 else self._frag[0]
            self._frag = []
            self.on_text(self, whole.decode())
        elif opcode == 0x9:  # ping → pong
            self.transport.write(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\x00" * 4 + payload)
        elif opcode == 0x8:  # close → echo and go
            if not self.transport.is_closing():
                self.transport.write(struct.pack("!BB", 0x88, 0x80 | len(payload)) + b"\x00" * 4 + payload)
                self.transport.close()


async def connect(url: str, on_open: Callable[[RawWebSocket], None], on_text: OnText) -> RawWebSocket:
    """Open a connection to ``ws://host:port/path?query``; ``on_open`` runs once the
    handshake is answered (101), ``on_text`` on every message after that."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    assert parts.hostname and parts.port
    async with asyncio.timeout(60):
        _, protocol = await loop.create_connection(
            lambda: RawWebSocket(request, on_open, on_text), parts.hostname, parts.port
        )
    return protocol
