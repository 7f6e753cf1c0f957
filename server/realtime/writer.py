"""The per-connection writer: a send queue bounded in bytes, with coalescing.

Light by design (issue 16 targets ≤ 24 KiB per idle WebSocket): ``__slots__``, the
coalescing index made on first use, and a writer task only while there is something to
send — it drains the queue in batches and ends. ``push`` never waits: it answers
``False`` when the queue would pass its bound, and the session then ends the connection
as slow (3008).

Status coalescing: once a client is behind (a quarter of the bound queued), a new entry
with the same key (the same upload on the same channel) supersedes the one still queued:
a slow client gets the newest state, not every step. A client that keeps up is never
coalesced: a burst of publications (e.g. when a frozen Redis resumes and every
publication in flight is acknowledged at once) reaches it whole. Coalescing in every
burst was how acknowledged publications went missing without a word to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from server.realtime.transport import Frame, Transport, TransportClosed

WRITE_BATCH_BYTES = 256 * 1024


class _Out:
    __slots__ = ("dead", "key", "size", "text")

    def __init__(self, text: Frame, key: str | None, size: int) -> None:
        self.text = text
        self.key = key
        self.size = size
        self.dead = False


class Writer:
    __slots__ = (
        "_coalesce",
        "_coalesce_from",
        "_limit",
        "_on_broken",
        "_queue",
        "_task",
        "_transport",
        "queued_bytes",
    )

    def __init__(self, transport: Transport, *, limit_bytes: int, on_broken: Callable[[], None]) -> None:
        self._transport = transport
        self._limit = limit_bytes
        self._coalesce_from = limit_bytes // 4
        self._on_broken = on_broken  # the transport failed while writing
        self._queue: deque[_Out] = deque()
        self._coalesce: dict[str, _Out] | None = None
        self._task: asyncio.Task[None] | None = None
        self.queued_bytes = 0

    def push(self, text: Frame, key: str | None = None) -> bool:
        """Queue ``text``; ``False`` (nothing queued) when the bound would be passed."""
        # Bytes on the wire (UTF-8); ``isascii`` is a flag check, so JSON without accents
        # costs no encoding here.
        size = len(text) if isinstance(text, bytes) or text.isascii() else len(text.encode())
        entry = _Out(text, key, size)
        if key is not None:
            if self._coalesce is None:
                self._coalesce = {}
            previous = self._coalesce.get(key)
            if previous is not None and not previous.dead and self.queued_bytes >= self._coalesce_from:
                previous.dead = True  # behind: superseded by a newer state of the same upload
                self.queued_bytes -= previous.size
            self._coalesce[key] = entry
        if self.queued_bytes + entry.size > self._limit:
            return False
        self._queue.append(entry)
        self.queued_bytes += entry.size
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return True

    def drop(self) -> None:
        """Forget everything queued (a slow client gets only the close frame)."""
        self._queue.clear()
        self._coalesce = None
        self.queued_bytes = 0

    async def _drain(self) -> None:
        try:
            while self._queue:
                frames: list[Frame] = []
                size = 0
                while self._queue and size < WRITE_BATCH_BYTES:
                    entry = self._queue.popleft()
                    if entry.dead:
                        continue
                    self.queued_bytes -= entry.size
                    if entry.key is not None and self._coalesce is not None:
                        if self._coalesce.get(entry.key) is entry:
                            del self._coalesce[entry.key]
                    frames.append(entry.text)
                    size += entry.size
                if frames:
                    await self._transport.write(frames)
        except TransportClosed:
            self.drop()
            self._on_broken()
        finally:
            self._task = None

    async def flush(self) -> None:
        """Wait until what is queued now has been written (or the transport broke)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def abort(self) -> None:
        """Stop writing now: the frame in flight is abandoned, the queue dropped."""
        self.drop()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
