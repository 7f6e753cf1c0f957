"""Turn one event into pushes: audience → targets → devices → claimed sends, at most
``push_concurrency`` in flight across all events, each (event, device) sent once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import asyncpg

from core.db import tenant_transaction
from core.events import Event
from core.metrics import NOTIFICATIONS
from core.settings import Settings
from subscribers.devices import delete_device
from subscribers.i18n import pick_locale
from subscribers.push import recipients, store
from subscribers.push.fcm import Outcome, SendResult
from subscribers.push.messages import PushMessage, build_message

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, message: PushMessage) -> SendResult: ...


class RetryLater(Exception):
    """Some sends failed transiently; the event must be redelivered (sent ones are not resent)."""


@dataclass
class Report:
    kind: str | None = None
    sent: int = 0
    removed: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0  # already delivered by an earlier delivery of the same event
    targets: list[str] = field(default_factory=list)


class PushNotifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.push_concurrency)

    async def handle(self, event: Event) -> Report:
        """Raises :class:`RetryLater` when some device should be tried again later."""
        report = Report()
        kind = recipients.push_kind(event)
        if kind is None:
            return report
        report.kind = kind.value
        now = self._clock()
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            context = await store.event_context(conn, event, kind)
            if context is None:
                log.warning(
                    "push: upload not found in the event's tenant; ignored",
                    extra={"event_id": str(event.id), "upload_id": str(event.upload_id)},
                )
                return report
            targets = recipients.choose(kind, context.uploader, context.admins, now)
            by_user = {t.person.user_id: t for t in targets}
            devices = await store.devices_of(conn, list(by_user))
            claimed = await store.claim(conn, event.tenant_id, event.id, devices)
        report.targets = [f"{t.audience.value}:{t.person.user_id}" for t in targets]
        report.skipped = len(devices) - len(claimed)
        jobs = []
        for device in devices:
            if device.device_id not in claimed:
                continue
            target = by_user[device.user_id]
            message = build_message(
                token=device.token,
                platform=device.platform,
                locale=pick_locale(device.locale, target.person.locale),
                kind=kind,
                audience=target.audience,
                critical=target.critical,
                facts=context.facts,
                public_url=self._settings.public_url,
                ttl_seconds=self._settings.push_ttl_seconds,
                now=now,
            )
            jobs.append(self._deliver(event, device, message))
        results = await asyncio.gather(*jobs)
        for result in results:
            if result.outcome is Outcome.SENT:
                report.sent += 1
            elif result.outcome is Outcome.BAD_TOKEN:
                report.removed += 1
            elif result.outcome is Outcome.FAILED:
                report.failed += 1
            else:
                report.retry += 1
        log.info(
            "push event handled",
            extra={
                "event_id": str(event.id),
                "kind": kind.value,
                "sent": report.sent,
                "removed": report.removed,
                "failed": report.failed,
                "retry": report.retry,
            },
        )
        if report.retry:
            raise RetryLater(f"{report.retry} push(es) to retry for event {event.id}")
        return report

    async def _deliver(self, event: Event, device: store.Device, message: PushMessage) -> SendResult:
        async with self._slots:
            try:
                result = await self._sender.send(message)
            except Exception as exc:  # a bug or an auth outage: keep the claim retryable
                log.exception("push send crashed", extra={"device_id": str(device.device_id)})
                result = SendResult(Outcome.RETRY_LATER, 1, error=f"{type(exc).__name__}: {exc}")
        NOTIFICATIONS.labels("push", result.outcome.value).inc()
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            if result.outcome is Outcome.SENT:
                await store.record(conn, event.id, device.device_id, "sent", name=result.name)
            elif result.outcome is Outcome.BAD_TOKEN:
                await store.record(conn, event.id, device.device_id, "dropped", error=result.error)
                await delete_device(conn, device.device_id)
                log.info(
                    "device token removed", extra={"device_id": str(device.device_id), "error": result.error}
                )
            elif result.outcome is Outcome.FAILED:
                await store.record(conn, event.id, device.device_id, "dropped", error=result.error)
                log.warning(
                    "push rejected", extra={"device_id": str(device.device_id), "error": result.error}
                )
            else:
                await store.record(conn, event.id, device.device_id, "failed", error=result.error)
        return result
