"""Turn one event into pushes: audience → targets → devices → claimed sends, at most
``push_concurrency`` in flight across all events, each (event, device) sent once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from core.db import tenant_transaction
from core.errors import Transient
from core.events import Event
from core.metrics import NOTIFICATIONS
from core.settings import Settings
from subscribers.devices import delete_device
from subscribers.i18n import pick_locale
from subscribers.inbox.service import Inbox, NoChannel, Presence
from subscribers.inbox.store import NewItem
from subscribers.push import recipients, store
from subscribers.push.fcm import Outcome, SendResult
from subscribers.push.messages import PushMessage, UploadFacts, build_message, deep_link, localized_text

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, message: PushMessage) -> SendResult: ...


def inbox_source(event: Event) -> str:
    return f"event:{event.id}"


class RetryLater(Transient):
    """Some sends failed transiently; the event must be redelivered (sent ones are not resent)."""


@dataclass
class Report:
    kind: str | None = None
    sent: int = 0
    removed: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0  # already delivered by an earlier delivery of the same event
    suppressed: int = 0  # held back for a live user who read it in the app meanwhile
    targets: list[str] = field(default_factory=list)


class PushNotifier:
    """Every event's audience gets an inbox item; the push targets get a push.

    A non-critical push for a user who is live in the app (a session on their ``user:``
    channel) waits up to ``push_defer_seconds``: if they read the inbox item meanwhile, the
    push is not sent (``suppressed``). Critical pushes (the uploader's failed or
    quarantined upload) always go at once. The badge is the user's unread count.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        settings: Settings,
        *,
        inbox: Inbox | None = None,
        presence: Presence | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        read_poll_seconds: float = 0.2,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._settings = settings
        self._inbox = inbox or Inbox(pool, NoChannel())
        self._presence: Presence = presence or NoChannel()
        self._clock = clock
        self._sleep = sleep
        self._poll = read_poll_seconds
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
        # The inbox first (idempotent per user and event): a failure here leaves no claim
        # behind, so the redelivery sends every push.
        source = inbox_source(event)
        everyone = recipients.audience(kind, context.uploader, context.admins)
        badges = await self._inbox.add(
            event.tenant_id, [self._inbox_item(kind, t, context.facts, source) for t in everyone]
        )
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            claimed = await store.claim(conn, event.tenant_id, event.id, devices)
        report.targets = [f"{t.audience.value}:{t.person.user_id}" for t in targets]
        report.skipped = len(devices) - len(claimed)
        mine = [d for d in devices if d.device_id in claimed]
        now_devices: list[store.Device] = []
        held: dict[uuid.UUID, list[store.Device]] = {}
        for device in mine:
            target = by_user[device.user_id]
            if not target.critical and self._settings.push_defer_seconds > 0:
                if device.user_id in held or await self._presence.online(event.tenant_id, device.user_id):
                    held.setdefault(device.user_id, []).append(device)
                    continue
            now_devices.append(device)
        jobs: list[Coroutine[Any, Any, list[SendResult]]] = [
            self._one(event, d, self._message(kind, by_user[d.user_id], d, context, now, badges))
            for d in now_devices
        ]
        jobs += [
            self._deferred(event, kind, by_user[user], group, context, source) for user, group in held.items()
        ]
        results = [result for group in await asyncio.gather(*jobs) for result in group]
        for result in results:
            if result.outcome is Outcome.SENT:
                report.sent += 1
            elif result.outcome is Outcome.BAD_TOKEN:
                report.removed += 1
            elif result.outcome is Outcome.FAILED:
                report.failed += 1
            elif result.outcome is Outcome.SUPPRESSED:
                report.suppressed += 1
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
                "suppressed": report.suppressed,
            },
        )
        if report.retry:
            raise RetryLater(f"{report.retry} push(es) to retry for event {event.id}")
        return report

    def _inbox_item(
        self, kind: recipients.PushKind, target: recipients.Target, facts: UploadFacts, source: str
    ) -> NewItem:
        title, body = localized_text(
            kind,
            target.audience,
            target.person.locale,
            file_name=facts.file_name,
            project_name=facts.project_name,
            reason=facts.reason,
        )
        return NewItem(
            user_id=target.person.user_id,
            source_key=source,
            kind=kind.value,
            title=title,
            body=body,
            locale=target.person.locale,
            critical=target.critical,
            project_id=facts.project_id,
            upload_id=facts.upload_id,
            data={
                "event_id": str(facts.event_id),
                "status": facts.status,
                "reason": facts.reason,
                "file_name": facts.file_name,
                "project_name": facts.project_name,
                "deep_link": deep_link(self._settings.public_url, facts),
            },
        )

    def _message(
        self,
        kind: recipients.PushKind,
        target: recipients.Target,
        device: store.Device,
        context: store.EventContext,
        now: datetime,
        badges: dict[uuid.UUID, int],
    ) -> PushMessage:
        return build_message(
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
            badge=badges.get(target.person.user_id),
        )

    async def _deferred(
        self,
        event: Event,
        kind: recipients.PushKind,
        target: recipients.Target,
        devices: list[store.Device],
        context: store.EventContext,
        source: str,
    ) -> list[SendResult]:
        """The user is live in the app: give them ``push_defer_seconds`` to read it there."""
        user_id = target.person.user_id
        waited, wait = 0.0, float(self._settings.push_defer_seconds)
        while True:
            if await self._inbox.is_read(event.tenant_id, user_id, source):
                async with tenant_transaction(self._pool, event.tenant_id) as conn:
                    for device in devices:
                        await store.record(conn, event.id, device.device_id, "suppressed")
                NOTIFICATIONS.labels("push", "suppressed").inc(len(devices))
                log.info("push suppressed: read in the app", extra={"event_id": str(event.id)})
                return [SendResult(Outcome.SUPPRESSED, 0) for _ in devices]
            if waited >= wait:
                break
            step = min(self._poll, wait - waited)
            await self._sleep(step)
            waited += step
        badges = {user_id: await self._inbox.unread(event.tenant_id, user_id)}
        now = self._clock()
        return list(
            await asyncio.gather(
                *(
                    self._deliver(event, d, self._message(kind, target, d, context, now, badges))
                    for d in devices
                )
            )
        )

    async def _one(self, event: Event, device: store.Device, message: PushMessage) -> list[SendResult]:
        return [await self._deliver(event, device, message)]

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
                await store.touch_device(conn, device.device_id)
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
