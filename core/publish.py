"""Publishing events to the real-time hub, behind a small interface.

The Uploads API publishes progress through it; the hub (``server.realtime``) provides
the real implementation; tests and Lambdas without a hub use :class:`MemoryPublisher`.
"""

from __future__ import annotations

from typing import Protocol

from core.events import Event


class EventPublisher(Protocol):
    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to its ``upload:``, ``project:`` and ``user:`` channels."""
        ...


class MemoryPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)
