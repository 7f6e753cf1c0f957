"""The hub's SQS consumer: upload events from the SNS topics → PostgreSQL → status cache →
WebSocket channels.

Queue ``{stack}-events`` is subscribed to the three SNS topics (raw delivery; the SNS
envelope is accepted too). Per message: validate (a bad message is logged and left for the
dead-letter queue), skip event ids already applied (``processed_events``, consumer
``hub``), move the upload's status forward only (``can_transition``), write the new
document through to the status cache and publish it. All of that happens in one tenant
transaction, so a failed publish rolls back the dedupe record and the message is retried.
Batches of ten, bounded concurrency, delete on success, backoff when SQS fails.

When a dependency fails (PostgreSQL, Redis), the messages are left in the queue and the
consumer takes no more until PostgreSQL answers again: every receive counts towards the
queue's ``maxReceiveCount`` (3), so receiving on a timer while the database is down would
dead-letter the queued events within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import orjson
from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from core import resources
from core.db import DatabaseUnavailable
from core.events import Event, InvalidEvent, parse_event
from core.publish import EventPublisher
from core.tracing import from_message_attributes
from server import metrics
from server.realtime.broker import BrokerUnavailable
from server.uploads.event_applier import PROBE_TIMEOUT, EventApplier, UploadNotFound

_tracer = trace.get_tracer("buildpeer.hub")
log = logging.getLogger(__name__)

QUEUE = "events"
HOLD_MAX_DELAY = 10.0
BATCHES_IN_FLIGHT = 3


def unwrap_body(body: str) -> bytes | str:
    """The event JSON of an SQS body: raw SNS delivery as is, or the ``Message`` of an SNS
    ``Notification`` envelope."""
    try:
        outer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # parse_event says why
    if (
        isinstance(outer, dict)
        and outer.get("Type") == "Notification"
        and isinstance(outer.get("Message"), str)
    ):
        return str(outer["Message"])
    return body


class EventConsumer:
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
    ) -> None:
        self.sqs = sqs
        self.queue_name = queue_name
        self.applier = applier
        self.wait_seconds = wait_seconds
        self.stop_timeout = stop_timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._held = False  # a dependency failed: wait for it before receiving again
        self._batch_slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._batches: set[asyncio.Task[None]] = set()
        self.handled = 0

    @classmethod
    def for_app(cls, app: Any) -> EventConsumer:
        state = app.state
        settings = state.settings
        return cls(
            sqs=state.sqs,
            queue_name=resources.queue_name(settings.stack, QUEUE),
            applier=EventApplier(state.pool, state.status_cache, _LatePublisher(app)),
            wait_seconds=settings.events_wait_seconds,
            concurrency=settings.events_concurrency,
            stop_timeout=settings.realtime_shutdown_seconds,
        )

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="events-consumer")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.stop_timeout)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        try:
            await self._receive_loop()
        except asyncio.CancelledError:  # stop() past its timeout: the batches go with it
            for task in self._batches:
                task.cancel()
            raise
        finally:
            if self._batches:
                await asyncio.gather(*self._batches, return_exceptions=True)

    async def _receive_loop(self) -> None:
        delay = 0.1
        queue_url: str | None = None
        while not self._stopping:
            if self._held:
                await self._wait_for_dependencies()
                continue
            try:
                if queue_url is None:
                    queue_url = (await self.sqs.get_queue_url(QueueName=self.queue_name))["QueueUrl"]
                response = await self.sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.wait_seconds,
                    AttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=["All"],
                )
                messages = response.get("Messages", [])
                if messages:
                    # The next receive overlaps this batch's work (one SQS round trip per
                    # batch otherwise caps the rate); BATCHES_IN_FLIGHT bounds what is held.
                    await self._batch_slots.acquire()
                    task = asyncio.create_task(self._batch(queue_url, messages))
                    self._batches.add(task)
                    task.add_done_callback(self._batch_done)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except (BotoCoreError, ClientError, OSError) as exc:
                log.warning("events queue unavailable (retrying in %.1fs): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 20.0)
            except Exception:
                log.exception("events consumer: unexpected error (retrying)")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 20.0)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._batch_slots.release()

    async def _batch(self, queue_url: str, messages: list[dict[str, Any]]) -> None:
        try:
            await self._handle_batch(queue_url, messages)
        except (BotoCoreError, ClientError, OSError) as exc:  # not deleted: they come back
            log.warning("events consumer: batch not acknowledged: %s", exc)
        except Exception:
            log.exception("events consumer: unexpected error in a batch")

    async def _handle_batch(self, queue_url: str, messages: list[dict[str, Any]]) -> None:
        outcomes = await asyncio.gather(*(self._guarded(m) for m in messages))
        done = [m for m, (ok, _) in zip(messages, outcomes, strict=True) if ok]
        retry = [m for m, (_, label) in zip(messages, outcomes, strict=True) if label == "retry"]
        if retry:
            self._held = True
            await self._retry_soon(queue_url, retry)
        if not done:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
        result = await self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        for failure in result.get("Failed", []):
            log.warning("events consumer: delete failed: %s", failure)

    async def _wait_for_dependencies(self) -> None:
        """Probe PostgreSQL with a growing delay; receive again once it answers."""
        delay = 0.5
        while not self._stopping:
            try:
                await asyncio.wait_for(self.applier.probe(), PROBE_TIMEOUT * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events consumer: holding queued events, database still down (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, HOLD_MAX_DELAY)
                continue
            break
        self._held = False

    async def _retry_soon(self, queue_url: str, messages: list[dict[str, Any]]) -> None:
        """A dependency was down: make the message visible again after a short backoff
        (2, 4, 8 … 60 s by receive count) instead of the queue's full visibility timeout."""
        entries = []
        for i, m in enumerate(messages):
            count = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            entries.append(
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": min(2**count, 60)}
            )
        try:
            await self.sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError, OSError) as exc:
            log.warning("events consumer: could not shorten visibility: %s", exc)

    async def _guarded(self, message: dict[str, Any]) -> tuple[bool, str]:
        parent = from_message_attributes(message.get("MessageAttributes"))
        async with self._limit:
            with _tracer.start_as_current_span("apply event", context=parent, kind=SpanKind.CONSUMER):
                ok, outcome = await self.handle(message.get("Body", ""))
        metrics.SQS_MESSAGES.labels(QUEUE, outcome).inc()
        self.handled += 1
        return ok, outcome

    async def handle(self, body: str) -> tuple[bool, str]:
        """(delete the message?, outcome label). Never raises."""
        try:
            event = parse_event(unwrap_body(body))
        except InvalidEvent as exc:
            log.warning("events consumer: invalid event left for the dead-letter queue: %s", exc)
            return False, "invalid"
        try:
            document = await self.applier.apply(event)
        except UploadNotFound as exc:
            log.warning("events consumer: %s; left for the dead-letter queue", exc)
            return False, "unknown_upload"
        except (DatabaseUnavailable, BrokerUnavailable, RedisError, asyncpg.PostgresError, OSError) as exc:
            log.warning("events consumer: event %s not applied, will retry: %s", event.id, exc)
            return False, "retry"
        except Exception:
            log.exception("events consumer: event %s failed", event.id)
            return False, "error"
        return True, "applied" if document is not None else "skipped"


class _LatePublisher:
    """The app's publisher as of publish time (the hub replaces the default at start)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:
        publisher: EventPublisher = self.app.state.publisher
        await publisher.publish(event, upload)
