"""In-process broker (``memory://``): one server instance, the same semantics as the Redis
one — tests/realtime/test_broker_contract.py runs one suite against both."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.realtime.broker import (
    OnControl,
    OnPublication,
    OnResubscribed,
    PresenceStats,
    Publication,
    StreamPosition,
)


@dataclass
class _Stream:
    epoch: str
    offset: int = 0
    items: deque[Publication] = field(default_factory=deque)
    expires_at: float = 0.0


class MemoryBroker:
    def __init__(self, *, history_size: int, history_ttl: int, presence_ttl: int = 60) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.presence_ttl = presence_ttl
        self._streams: dict[str, _Stream] = {}
        self._subscribed: set[str] = set()
        self._presence: dict[str, dict[str, tuple[str, float]]] = {}
        self._on_publication: OnPublication | None = None
        self._on_control: OnControl | None = None

    async def start(
        self,
        on_publication: OnPublication,
        on_resubscribed: OnResubscribed,
        on_control: OnControl | None = None,
    ) -> None:
        self._on_publication = on_publication
        self._on_control = on_control

    async def stop(self) -> None:
        self._on_publication = None
        self._on_control = None

    async def publish_control(self, data: bytes) -> None:
        if self._on_control is not None:
            self._on_control(data)

    def _stream(self, channel: str) -> _Stream:
        now = time.monotonic()
        stream = self._streams.get(channel)
        if stream is None or (stream.expires_at and stream.expires_at < now and not stream.items):
            stream = _Stream(epoch=uuid.uuid4().hex[:8])
            self._streams[channel] = stream
        if stream.expires_at and stream.expires_at < now:
            stream.items.clear()  # history expired; offsets and epoch live on (Redis: meta key)
        return stream

    async def publish(self, channel: str, data: bytes, *, key: str | None = None) -> StreamPosition:
        stream = self._stream(channel)
        stream.offset += 1
        pub = Publication(stream.offset, stream.epoch, data, key)
        stream.items.append(pub)
        while len(stream.items) > self.history_size:
            stream.items.popleft()
        stream.expires_at = time.monotonic() + self.history_ttl
        if channel in self._subscribed and self._on_publication is not None:
            self._on_publication(channel, pub)
        return StreamPosition(stream.offset, stream.epoch)

    async def publish_many(
        self, channels: Sequence[str], data: bytes, *, key: str | None = None
    ) -> list[StreamPosition]:
        return [await self.publish(channel, data, key=key) for channel in channels]

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def history(
        self, channel: str, *, since: int | None, limit: int, reverse: bool = False
    ) -> tuple[list[Publication], StreamPosition]:
        stream = self._stream(channel)
        pubs = [p for p in stream.items if since is None or p.offset > since]
        if reverse:
            pubs.reverse()
        if limit >= 0:
            pubs = pubs[:limit]
        return pubs, StreamPosition(stream.offset, stream.epoch)

    async def add_presence(self, channel: str, client_id: str, user_id: str) -> None:
        self._presence.setdefault(channel, {})[client_id] = (user_id, time.monotonic() + self.presence_ttl)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        self._presence.get(channel, {}).pop(client_id, None)

    async def presence_stats(self, channel: str) -> PresenceStats:
        now = time.monotonic()
        entries = {c: v for c, v in self._presence.get(channel, {}).items() if v[1] >= now}
        self._presence[channel] = entries
        return PresenceStats(len(entries), len({user for user, _ in entries.values()}))
