"""The inbox as the rest of the system uses it: store an item or change its state, and
tell the user's live sessions on their ``user:<user_id>`` channel.

Publications on ``user:`` (JSON), besides the upload events the hub already sends there:

* ``{"type": "inbox.item", "item": {...}, "unread": N}`` — a new item;
* ``{"type": "inbox.unread", "unread": N}`` — the count changed (read, read-all, archive).

The channel publisher and the presence check are given to the constructor (the server
passes the real-time hub's; tests may pass their own), so this package never imports the
server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from core.db import tenant_transaction
from subscribers.inbox import store

log = logging.getLogger(__name__)


class UserChannel(Protocol):
    async def publish_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID, data: dict[str, Any]) -> None:
        """Publish ``data`` on ``user:<user_id>`` (history + fan-out to every instance)."""
        ...


class Presence(Protocol):
    async def online(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Whether the user has a live session subscribed to their ``user:`` channel."""
        ...


class NoChannel:
    """No real-time hub in this process (a CLI run): nothing to tell, nobody online."""

    async def publish_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID, data: dict[str, Any]) -> None:
        return None

    async def online(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return False


class Inbox:
    def __init__(self, pool: asyncpg.Pool, channel: UserChannel) -> None:
        self._pool = pool
        self._channel = channel

    async def _tell(self, tenant_id: uuid.UUID, user_id: uuid.UUID, data: dict[str, Any]) -> None:
        try:
            await self._channel.publish_user(tenant_id, user_id, data)
        except Exception as exc:  # live updates are best effort; the API has the truth
            log.warning("inbox: live publish failed", extra={"user_id": str(user_id), "error": str(exc)})

    async def add(self, tenant_id: uuid.UUID, items: Sequence[store.NewItem]) -> dict[uuid.UUID, int]:
        """Store the items (once each per user) and publish the new ones; returns each
        user's unread count afterwards (the push badge)."""
        added: list[tuple[uuid.UUID, dict[str, Any]]] = []
        counts: dict[uuid.UUID, int] = {}
        async with tenant_transaction(self._pool, tenant_id) as conn:
            for item in items:
                doc = await store.add(conn, tenant_id, item)
                if doc is not None:
                    added.append((item.user_id, doc))
            for user_id in {item.user_id for item in items}:
                counts[user_id] = await store.unread_count(conn, user_id)
        for user_id, doc in added:
            await self._tell(
                tenant_id, user_id, {"type": "inbox.item", "item": doc, "unread": counts[user_id]}
            )
        return counts

    async def count_changed(self, tenant_id: uuid.UUID, user_id: uuid.UUID, unread: int) -> None:
        await self._tell(tenant_id, user_id, {"type": "inbox.unread", "unread": unread})

    async def is_read(self, tenant_id: uuid.UUID, user_id: uuid.UUID, source_key: str) -> bool:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return await store.is_read(conn, user_id, source_key)

    async def unread(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return await store.unread_count(conn, user_id)
