"""The per-connection writer: a send queue bounded in bytes, with coalescing.

Light by design (issue 16 targets ≤ 24 KiB per idle WebSocket): ``__slots__``, no queue
held while there is nothing to send (the deque and the coalescing index are made on use
and let go once written), and no task per write. ``push`` never waits: it answers
``False`` when the queue would pass its bound, and the session then ends the connection
as slow (3008).

Writing: the writers that were given something during one event-loop iteration are
written together at the start of the next one (one ``call_soon`` for all of them, so a
fan-out of a publication to N clients is N writes in one callback, and the publications
that arrived in the same iteration go out in one frame per client). Each write's coroutine
is driven right there: on uvicorn it completes without suspending (the transport buffers
it). Only a write that has to wait — the transport paused by a client that is not
reading — becomes a task, which goes on draining the queue and ends.

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
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from server.realtime.transport import Frame, Transport, TransportClosed

log = logging.getLogger(__name__)

WRITE_BATCH_BYTES = 256 * 1024


class _Out:
    __slots__ = ("dead", "key", "size", "text")

    def __init__(self, text: Frame, key: str | None, size: int) -> None:
        self.text = text
        self.key = key
        self.size = size
        self.dead = False


class _Batch(threading.local):
    """The writers waiting for this thread's event loop to write them (one loop per
    thread at a time; a new loop starts a new batch)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.writers: list[Writer] = []


_batch = _Batch()


def _write_batch(writers: list[Writer]) -> None:
    if _batch.writers is writers:
        _batch.writers = []  # pushes from here on go in the next batch
    for writer in writers:
        writer._write_now()


class _Resume:
    """Awaiting it goes on driving ``coro``, a coroutine that was started by hand and
    suspended on ``yielded`` (what an asyncio task would have received from it)."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # thrown in by the task: cancelled
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration:
                    return


class Writer:
    __slots__ = (
        "_coalesce",
        "_coalesce_from",
        "_limit",
        "_on_broken",
        "_queue",
        "_scheduled",
        "_task",
        "_transport",
        "queued_bytes",
    )

    def __init__(self, transport: Transport, *, limit_bytes: int, on_broken: Callable[[], None]) -> None:
        self._transport = transport
        self._limit = limit_bytes
        self._coalesce_from = limit_bytes // 4
        self._on_broken = on_broken  # the transport failed while writing
        self._queue: deque[_Out] | None = None
        self._coalesce: dict[str, _Out] | None = None
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False  # in this loop iteration's batch
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
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(entry)
        self.queued_bytes += entry.size
        if self._task is None and not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            batch = _batch
            if batch.loop is not loop:
                batch.loop, batch.writers = loop, []
            if not batch.writers:
                loop.call_soon(_write_batch, batch.writers)
            batch.writers.append(self)
        return True

    def drop(self) -> None:
        """Forget everything queued (a slow client gets only the close frame)."""
        self._queue = None
        self._coalesce = None
        self.queued_bytes = 0

    def _take(self) -> list[Frame]:
        """The next frames to write (up to a batch's worth), out of the queue."""
        queue = self._queue
        frames: list[Frame] = []
        if queue is None:
            return frames
        size = 0
        coalesce = self._coalesce
        while queue and size < WRITE_BATCH_BYTES:
            entry = queue.popleft()
            if entry.dead:
                continue
            self.queued_bytes -= entry.size
            if entry.key is not None and coalesce is not None and coalesce.get(entry.key) is entry:
                del coalesce[entry.key]
            frames.append(entry.text)
            size += entry.size
        if not queue:
            self._queue = None  # nothing held while idle
            if not coalesce:
                self._coalesce = None
        return frames

    def _write_now(self) -> None:
        """Write what is queued from the batch callback; a task only if the write waits."""
        self._scheduled = False
        if self._task is not None:
            return
        frames = self._take()
        if not frames:
            return
        coro = self._transport.write(frames)
        try:
            yielded = coro.send(None)
        except StopIteration:
            if self._queue:  # more than one batch's worth
                self._task = asyncio.create_task(self._drain())
            return
        except TransportClosed:
            self._broken()
            return
        except Exception:  # not this writer's to stop the batch
            log.exception("realtime: write failed")
            self._broken()
            return
        self._task = asyncio.create_task(self._drain(coro, yielded))

    async def _drain(self, started: Coroutine[Any, Any, None] | None = None, yielded: Any = None) -> None:
        try:
            if started is not None:
                await _Resume(started, yielded)
            while frames := self._take():
                await self._transport.write(frames)
        except TransportClosed:
            self._broken()
        finally:
            self._task = None

    def _broken(self) -> None:
        self.drop()
        self._on_broken()

    async def flush(self) -> None:
        """Wait until what is queued now has been written (or the transport broke)."""
        while True:
            if self._task is not None:
                await asyncio.shield(self._task)
            elif self._queue:
                self._task = asyncio.create_task(self._drain())
            else:
                return

    async def abort(self) -> None:
        """Stop writing now: the frame in flight is abandoned, the queue dropped."""
        self.drop()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
