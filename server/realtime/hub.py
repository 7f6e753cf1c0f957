"""The hub: this process's clients indexed by channel, by user and by tenant, and the
fan-out of one publication to a channel's local subscribers. No I/O, nothing awaits:
delivering is queueing into each client's writer (centrifugal/centrifuge ``hub.go``).

The node (:mod:`server.realtime.node`) decides what reaches the hub, and in what order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from server import metrics
from server.realtime import protocol as p
from server.realtime.broker import Publication
from server.realtime.channels import Channel


@dataclass(eq=False, slots=True)
class Subscription:
    """One client's subscription. ``offset``/``epoch``: the last position delivered to
    it. While ``recovering`` (its subscribe is being answered) live publications wait in
    ``buffer``."""

    channel: Channel
    broker_channel: str
    offset: int = 0
    epoch: str = ""
    recovering: bool = True
    buffer: list[tuple[Publication, str]] = field(default_factory=list)
    delta: bool = False  # Fossil delta negotiated (``delta: "fossil"``)
    delta_base: bytes | None = None  # the data of the last publication the client received


class HubClient(Protocol):
    def deliver(self, sub: Subscription, pub: Publication, frame: str) -> None:
        """Queue ``frame`` (the push of ``pub``) for ``sub``; never awaits."""
        ...


C = TypeVar("C", bound=HubClient)


class ConnectionLimitReached(Exception):
    pass


class Hub(Generic[C]):
    __slots__ = ("_by_tenant", "_by_user", "_channels", "tenant_limit")

    def __init__(self, tenant_limit: int = 0) -> None:
        self.tenant_limit = tenant_limit  # 0 = unlimited
        self._by_tenant: dict[uuid.UUID, set[C]] = {}
        self._by_user: dict[tuple[uuid.UUID, uuid.UUID], set[C]] = {}
        self._channels: dict[str, dict[C, Subscription]] = {}

    # --- clients ---

    def add_client(self, client: C, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        clients = self._by_tenant.setdefault(tenant_id, set())
        if self.tenant_limit and len(clients) >= self.tenant_limit:
            if not clients:
                del self._by_tenant[tenant_id]
            raise ConnectionLimitReached(str(tenant_id))
        clients.add(client)
        self._by_user.setdefault((tenant_id, user_id), set()).add(client)
        metrics.WEBSOCKET_CONNECTIONS.labels(str(tenant_id)).inc()

    def remove_client(self, client: C, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        clients = self._by_tenant.get(tenant_id)
        if clients is None or client not in clients:
            return
        clients.discard(client)
        if not clients:
            del self._by_tenant[tenant_id]
        users = self._by_user.get((tenant_id, user_id), set())
        users.discard(client)
        if not users:
            self._by_user.pop((tenant_id, user_id), None)
        metrics.WEBSOCKET_CONNECTIONS.labels(str(tenant_id)).dec()

    def count(self, tenant_id: uuid.UUID | None = None) -> int:
        if tenant_id is None:
            return sum(len(c) for c in self._by_tenant.values())
        return len(self._by_tenant.get(tenant_id, ()))

    def user_clients(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[C]:
        return list(self._by_user.get((tenant_id, user_id), ()))

    def __iter__(self) -> Iterator[C]:
        for clients in list(self._by_tenant.values()):
            yield from list(clients)

    # --- channels ---

    def add_subscriber(self, key: str, client: C, sub: Subscription) -> bool:
        """Index ``sub`` under broker channel ``key``; ``True`` when it is the first."""
        subscribers = self._channels.get(key)
        first = subscribers is None
        if subscribers is None:
            subscribers = self._channels[key] = {}
        subscribers[client] = sub
        return first

    def remove_subscriber(self, key: str, client: C, sub: Subscription) -> bool:
        """``True`` when ``sub`` was the channel's last subscriber here."""
        subscribers = self._channels.get(key)
        if subscribers is None or subscribers.get(client) is not sub:
            return False
        del subscribers[client]
        if subscribers:
            return False
        del self._channels[key]
        return True

    def subscribers(self, key: str) -> list[tuple[C, Subscription]]:
        return list(self._channels.get(key, {}).items())

    def channels(self) -> list[str]:
        return list(self._channels)

    def broadcast(self, key: str, pub: Publication) -> int:
        """Queue ``pub`` for every local subscriber of ``key``; how many there were."""
        subscribers = self._channels.get(key)
        if not subscribers:
            return 0
        frame = ""
        for client, sub in list(subscribers.items()):
            if not frame:
                frame = p.publication_push(sub.channel.name, pub.data, pub.offset)
            client.deliver(sub, pub, frame)
        return len(subscribers)
