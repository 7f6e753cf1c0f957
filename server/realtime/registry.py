"""Connections of this process by tenant and user: caps, targeted disconnects, metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from server import metrics
from server.realtime.protocol import FORCE_RECONNECT, Disconnect

if TYPE_CHECKING:
    from server.realtime.session import Session


class ConnectionLimitReached(Exception):
    pass


class SessionRegistry:
    def __init__(self, tenant_limit: int = 0) -> None:
        self.tenant_limit = tenant_limit  # 0 = unlimited
        self._by_tenant: dict[uuid.UUID, set[Session]] = {}
        self._by_user: dict[tuple[uuid.UUID, uuid.UUID], set[Session]] = {}

    def add(self, session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        sessions = self._by_tenant.setdefault(tenant_id, set())
        if self.tenant_limit and len(sessions) >= self.tenant_limit:
            if not sessions:
                del self._by_tenant[tenant_id]
            raise ConnectionLimitReached(str(tenant_id))
        sessions.add(session)
        self._by_user.setdefault((tenant_id, user_id), set()).add(session)
        metrics.WEBSOCKET_CONNECTIONS.labels(str(tenant_id)).inc()

    def remove(self, session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        sessions = self._by_tenant.get(tenant_id)
        if sessions is None or session not in sessions:
            return
        sessions.discard(session)
        if not sessions:
            del self._by_tenant[tenant_id]
        users = self._by_user.get((tenant_id, user_id), set())
        users.discard(session)
        if not users:
            self._by_user.pop((tenant_id, user_id), None)
        metrics.WEBSOCKET_CONNECTIONS.labels(str(tenant_id)).dec()

    def count(self, tenant_id: uuid.UUID | None = None) -> int:
        if tenant_id is None:
            return sum(len(s) for s in self._by_tenant.values())
        return len(self._by_tenant.get(tenant_id, ()))

    def user_sessions(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[Session]:
        return list(self._by_user.get((tenant_id, user_id), ()))

    def __iter__(self) -> Iterator[Session]:
        for sessions in list(self._by_tenant.values()):
            yield from list(sessions)

    def disconnect_user(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, disconnect: Disconnect = FORCE_RECONNECT
    ) -> int:
        """End every session of the user on this process (e.g. removed from a project: they
        reconnect and are authorised again). Returns how many were ended."""
        sessions = self.user_sessions(tenant_id, user_id)
        for session in sessions:
            session.disconnect(disconnect)
        return len(sessions)
