"""A minimal Centrifugo-protocol client over ``websockets`` for protocol-level tests."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.next_id = 1
        self.pending: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, *, rcvbuf: int | None = None, max_queue: int | None = 16) -> WsClient:
        sock = None
        if rcvbuf is not None:
            host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, int(port)))
            sock.setblocking(False)
        conn = await connect(url, sock=sock, max_queue=max_queue, ping_interval=None, max_size=2**24)
        return cls(conn)

    async def send_raw(self, text: str | bytes) -> None:
        await self.conn.send(text)

    async def command(self, method: str, params: dict[str, Any] | None = None) -> int:
        cid = self.next_id
        self.next_id += 1
        await self.conn.send(orjson.dumps({"id": cid, method: params or {}}).decode())
        return cid

    async def _read(self, wait: float) -> dict[str, Any]:
        if self.pending:
            return self.pending.pop(0)
        try:
            frame = await asyncio.wait_for(self.conn.recv(), wait)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from exc
        lines = [orjson.loads(line) for line in str(frame).split("\n") if line]
        self.pending.extend(lines[1:])
        first: dict[str, Any] = lines[0]
        return first

    async def next(self, wait: float = 10) -> dict[str, Any]:
        """The next reply or push; answers server pings (``{}``) on the way."""
        while True:
            message = await self._read(wait)
            if message == {}:
                await self.conn.send("{}")
                continue
            return message

    async def call(
        self, method: str, params: dict[str, Any] | None = None, wait: float = 10
    ) -> dict[str, Any]:
        cid = await self.command(method, params)
        skipped: list[dict[str, Any]] = []
        while True:
            message = await self.next(wait)
            if message.get("id") == cid:
                self.pending = skipped + self.pending
                return message
            skipped.append(message)

    async def connect(self, token: str) -> dict[str, Any]:
        return await self.call("connect", {"token": token, "name": "py"})

    async def publications(self, n: int, wait: float = 10) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            message = await self.next(wait)
            if "push" in message and "pub" in message["push"]:
                out.append(message["push"])
        return out

    async def closed(self, wait: float = 15) -> Closed:
        """Read until the server closes; the close code and reason."""
        try:
            while True:
                await self.next(wait)
        except Closed as exc:
            return exc

    async def close(self) -> None:
        await self.conn.close()


class StalledClient:
    """A WebSocket client on a raw socket with a tiny receive buffer that stops reading
    after the handshake (a phone in a tunnel), then can drain what was sent to it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: Any) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol

    @classmethod
    async def open(cls, url: str) -> StalledClient:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        protocol = ClientProtocol(uri, max_size=None)
        protocol.send_request(protocol.connect())
        client = cls(reader, writer, protocol)
        await client._flush()
        while protocol.handshake_exc is None and not protocol.events_received():
            protocol.receive_data(await reader.read(4096))
        return client

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)
        await self.writer.drain()

    async def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        await self._flush()

    async def drain_until_close(self, wait: float = 30) -> tuple[int | None, int]:
        """Read everything; (close code, text frames seen) once the server closes."""
        from websockets.frames import Opcode

        frames = 0

        async def run() -> int | None:
            nonlocal frames
            while True:
                data = await self.reader.read(65536)
                if not data:
                    self.protocol.receive_eof()
                else:
                    self.protocol.receive_data(data)
                for frame in self.protocol.events_received():
                    if frame.opcode is Opcode.TEXT:
                        frames += 1
                    elif frame.opcode is Opcode.CLOSE:
                        from websockets.frames import Close

                        return Close.parse(frame.data).code
                if not data:
                    return None

        code = await asyncio.wait_for(run(), wait)
        self.writer.close()
        return code, frames

    async def drain_texts(self, done: Any, wait: float = 30) -> list[str]:
        """Read again: every JSON line of the text frames until ``done(lines)``."""
        from websockets.frames import Opcode

        lines: list[str] = []

        async def run() -> None:
            while not done(lines):
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed while draining")
                self.protocol.receive_data(data)
                for frame in self.protocol.events_received():
                    if frame.opcode is Opcode.TEXT:
                        lines.extend(line for line in frame.data.decode().split("\n") if line)
                    elif frame.opcode is Opcode.CLOSE:
                        raise ConnectionError(f"closed while draining: {frame.data!r}")

        await asyncio.wait_for(run(), wait)
        return lines
