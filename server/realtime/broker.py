"""The broker protocol: per-channel bounded history with offsets and an epoch, plus live
fan-out to every server instance. Two implementations, chosen by URL (like
encode/broadcaster): ``memory://`` (one process) and ``redis://`` (many processes).

A channel here is the broker name (tenant first, see ``channels.Channel.broker_name``).
``data`` is the publication's JSON, kept as bytes end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import Transient


class BrokerUnavailable(Transient):
    """The broker cannot be reached right now; callers retry later."""


@dataclass(frozen=True, slots=True)
class StreamPosition:
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    offset: int
    epoch: str
    data: bytes
    key: str | None = None  # publications with the same key supersede each other (coalescing)


@dataclass(frozen=True, slots=True)
class PresenceStats:
    num_clients: int
    num_users: int


# A live publication on ``channel`` reached this instance.
OnPublication = Callable[[str, Publication], None]
# The live feed was interrupted and is back: positions of local subscribers must be checked.
OnResubscribed = Callable[[], Coroutine[Any, Any, None]]
# A control message (``server.realtime.control``) reached this instance.
OnControl = Callable[[bytes], None]


class Broker(Protocol):
    async def start(
        self,
        on_publication: OnPublication,
        on_resubscribed: OnResubscribed,
        on_control: OnControl | None = None,
    ) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, channel: str, data: bytes, *, key: str | None = None) -> StreamPosition:
        """Append to history and fan out; the new publication's position."""
        ...

    async def publish_many(
        self, channels: Sequence[str], data: bytes, *, key: str | None = None
    ) -> list[StreamPosition]:
        """:meth:`publish` of one ``data`` to each of ``channels`` (in as few broker round
        trips as the backend allows); their new positions, in order. On an error some of the
        channels may have the publication."""
        ...

    async def publish_control(self, data: bytes) -> None:
        """Deliver ``data`` to ``on_control`` of every started instance (this one too)."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Deliver live publications of ``channel`` to this instance from now on."""
        ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def history(
        self, channel: str, *, since: int | None, limit: int, reverse: bool = False
    ) -> tuple[list[Publication], StreamPosition]:
        """Publications after offset ``since`` (all kept when ``None``), at most ``limit``
        (``limit`` < 0: no limit), and the stream's current position. Creates the epoch of
        a stream that has none."""
        ...

    async def add_presence(self, channel: str, client_id: str, user_id: str) -> None: ...

    async def remove_presence(self, channel: str, client_id: str) -> None: ...

    async def presence_stats(self, channel: str) -> PresenceStats: ...


def create_broker(
    url: str, *, history_size: int, history_ttl: int, presence_ttl: int = 60, cluster: bool = False
) -> Broker:
    """``cluster``: the ``redis://`` URL is one node of a Redis Cluster (sharded PUB/SUB)."""
    if url.startswith("memory://"):
        from server.realtime.memory_broker import MemoryBroker

        return MemoryBroker(history_size=history_size, history_ttl=history_ttl, presence_ttl=presence_ttl)
    from server.realtime.redis_broker import RedisBroker

    return RedisBroker(
        url, history_size=history_size, history_ttl=history_ttl, presence_ttl=presence_ttl, cluster=cluster
    )
