"""A tiny TCP proxy on 127.0.0.1 for fault tests, run in its own thread and event loop.

It forwards every connection to the first of its ``targets`` that accepts one (a load
balancer that fails over when an instance dies); with ``round_robin=True`` each new
connection starts at the next target (a balancer spreading clients over every instance).
``refuse()`` cuts every open connection and closes the listening socket (the port answers
"connection refused", as an unreachable endpoint does); ``stall()`` keeps accepting but
forwards nothing (a peer that hangs); ``forward()`` listens again on the same port.
``accepted`` counts connections that reached the proxy, which tells how often a client tried.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Literal

from devstack.process import free_port

Mode = Literal["forward", "stall", "refuse"]


class TcpProxy:
    def __init__(self, *targets: tuple[str, int], port: int | None = None, round_robin: bool = False) -> None:
        self.targets = list(targets)
        self.round_robin = round_robin
        self._next = 0
        self.port = port or free_port()
        self.mode: Mode = "forward"
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._forwarding = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, None], timeout: float = 10) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        # thousands of open connections on a loaded machine: their cancellation takes a while
        self._call(self._shutdown(cancel=True), timeout=120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def refuse(self) -> None:
        self.mode = "refuse"
        self._loop.call_soon_threadsafe(self._forwarding.clear)
        self._call(self._shutdown())

    def stall(self) -> None:
        self.mode = "stall"
        self._loop.call_soon_threadsafe(self._forwarding.clear)

    def forward(self) -> None:
        self.mode = "forward"
        self._loop.call_soon_threadsafe(self._forwarding.set)
        if self._server is None:
            self._call(self._listen())

    async def _listen(self) -> None:
        if self.mode == "forward":
            self._forwarding.set()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _shutdown(self, *, cancel: bool = False) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if cancel:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            await self._forwarding.wait()
            up_reader, up_writer = await self._connect()
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):  # closed under it: the connection just ends
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: OSError = ConnectionRefusedError("no target")
        start = 0
        if self.round_robin:
            start, self._next = self._next, (self._next + 1) % len(self.targets)
        for target in self.targets[start:] + self.targets[:start]:
            try:
                return await asyncio.open_connection(*target)
            except OSError as exc:
                error = exc
        raise error

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._forwarding.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
