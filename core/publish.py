"""Publishing events to the real-time hub, behind a small interface.

The Uploads API publishes progress through it; the hub (``server.realtime``) provides
the real implementation; tests and Lambdas without a hub use :class:`MemoryPublisher`.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.events import Event


class EventPublisher(Protocol):
    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:
        """Deliver ``event`` to its ``upload:``, ``project:`` and ``user:`` channels;
        ``upload`` is the new upload document when the caller has it."""
        ...


class MemoryPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:
        self.events.append(event)
