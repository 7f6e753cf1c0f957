"""The hub's SQS consumer: upload events from the SNS topics → PostgreSQL → status cache →
WebSocket channels.

Queue ``{stack}-events`` is subscribed to the three SNS topics (raw delivery; the SNS
envelope is accepted too). Per message: validate (a bad message is logged and left for the
dead-letter queue), skip event ids already applied (``processed_events``, consumer
``hub``), move the upload's status forward only (``can_transition``), write the new
document through to the status cache and publish it. All of that happens in one tenant
transaction, so a failed publish rolls back the dedupe record and the message is retried.

The queue loop is :class:`core.queue_consumer.QueueConsumer` (batches of ten, bounded
concurrency, overlapping receives, delete on success, backoff when SQS fails): when a
dependency fails (PostgreSQL, the broker), the messages are left in the queue and the
consumer takes no more until PostgreSQL and Redis answer again.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from core import resources
from core.envelope import unwrap_sns
from core.errors import Transient, as_transient
from core.events import InvalidEvent, parse_event
from core.publish import EventPublisher
from core.queue_consumer import (
    ConsumerConfig,
    Message,
    Outcome,
    Probe,
    QueueComponent,
    QueueConsumer,
    Result,
    per_message,
)
from core.tracing import from_message_attributes
from server.uploads.event_applier import PROBE_TIMEOUT, EventApplier, UploadNotFound

_tracer = trace.get_tracer("buildpeer.hub")
log = logging.getLogger(__name__)

QUEUE = "events"
BATCHES_IN_FLIGHT = 3


class EventConsumer(QueueComponent):
    """Background component polling the ``events`` queue."""

    name = "events-consumer"

    def __init__(
        self,
        *,
        sqs: Any,
        queue_name: str,
        applier: EventApplier,
        wait_seconds: int = 20,
        concurrency: int = 8,
        stop_timeout: float = 5.0,
        batches_in_flight: int = BATCHES_IN_FLIGHT,
        probe: Probe | None = None,
    ) -> None:
        self.applier = applier
        self.handled = 0
        self._consumer = QueueConsumer(
            sqs,
            ConsumerConfig(
                name=QUEUE,
                queue_name=queue_name,
                wait_seconds=wait_seconds,
                batches_in_flight=batches_in_flight,
                stop_timeout=stop_timeout,
                probe_timeout=PROBE_TIMEOUT * 2,
            ),
            per_message(self._handle_message, concurrency, log),
            probe=probe or applier.probe,
            log=log,
        )

    @classmethod
    def for_app(cls, app: Any, publisher: EventPublisher) -> EventConsumer:
        """``publisher``: the real-time node (built before the components that use it)."""
        state = app.state
        settings = state.settings
        applier = EventApplier(state.pool, state.status_cache, publisher)
        broker_url = settings.realtime_broker_url or settings.redis_url or ""
        # The broker's Redis, when it is the app's (a memory broker needs none).
        redis = getattr(state, "redis", None) if broker_url == settings.redis_url else None

        async def probe() -> None:
            """PostgreSQL answers, and the broker's Redis when there is one."""
            await applier.probe()
            if redis is not None:
                await redis.ping()

        return cls(
            sqs=state.sqs,
            queue_name=resources.queue_name(settings.stack, QUEUE),
            applier=applier,
            wait_seconds=settings.events_wait_seconds,
            concurrency=settings.events_concurrency,
            stop_timeout=settings.realtime_shutdown_seconds,
            probe=probe,
        )

    async def _handle_message(self, message: Message) -> Result:
        parent = from_message_attributes(message.get("MessageAttributes"))
        with _tracer.start_as_current_span("apply event", context=parent, kind=SpanKind.CONSUMER):
            ok, label = await self.handle(message.get("Body", ""))
        self.handled += 1
        if ok:
            return Result(Outcome.DONE, label)
        return Result(Outcome.RETRY if label == "retry" else Outcome.POISON, label)

    async def handle(self, body: str) -> tuple[bool, str]:
        """(delete the message?, outcome label). Never raises."""
        try:
            event = parse_event(unwrap_sns(body))
        except InvalidEvent as exc:
            log.warning("events consumer: invalid event left for the dead-letter queue: %s", exc)
            return False, "invalid"
        try:
            document = await self.applier.apply(event)
        except UploadNotFound as exc:
            log.warning("events consumer: %s; left for the dead-letter queue", exc)
            return False, "unknown_upload"
        except Exception as exc:
            error = as_transient(exc)
            if isinstance(error, Transient):
                log.warning("events consumer: event %s not applied, will retry: %s", event.id, error)
                return False, "retry"
            log.exception("events consumer: event %s failed", event.id)
            return False, "error"
        return True, "applied" if document is not None else "skipped"
