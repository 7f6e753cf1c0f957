"""The push consumer: long-polls the ``push`` SQS queue (subscribed to the three SNS
topics with raw delivery) and hands each event to the notifier.

A message is deleted only once handled. A bad message is logged and left alone, so
SQS redelivers it and, after ``maxReceiveCount``, parks it in the dead-letter queue; a
transient failure is left the same way. The loop never dies on one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from core import resources
from core.events import Event, InvalidEvent, parse_event
from core.metrics import SQS_MESSAGES
from subscribers.push.notifier import PushNotifier, RetryLater

log = logging.getLogger(__name__)


def event_from_body(body: str) -> Event:
    """A v1 event from an SQS body: raw SNS delivery, or the SNS JSON envelope."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("body: not JSON") from exc
    if isinstance(raw, dict) and raw.get("Type") == "Notification" and isinstance(raw.get("Message"), str):
        return parse_event(raw["Message"])
    return parse_event(raw)


class PushConsumer:
    name = "push-consumer"

    def __init__(
        self,
        sqs: Any,
        notifier: PushNotifier,
        *,
        queue_name: str,
        wait_seconds: int = 20,
        batch_size: int = 10,
        stop_timeout: float = 25.0,
    ) -> None:
        self._sqs = sqs
        self._notifier = notifier
        self._queue_name = queue_name
        self._wait = wait_seconds
        self._batch = batch_size
        self._stop_timeout = stop_timeout
        self._queue_url: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.error: BaseException | None = None
        self.handled = 0

    @classmethod
    def queue_for(cls, stack: str) -> str:
        return resources.queue_name(stack, "push")

    async def start(self) -> None:
        self._queue_url = (await self._sqs.get_queue_url(QueueName=self._queue_name))["QueueUrl"]
        self._task = asyncio.create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.error = task.exception()
            log.error("push consumer crashed", exc_info=self.error)

    async def stop(self) -> None:
        """Finish the poll in flight and the messages it brings, then return. The poll is
        not cancelled: SQS would still hand its messages to the abandoned request, hiding
        them for a whole visibility timeout. Past ``stop_timeout`` the task is cancelled."""
        self._stopping.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._stop_timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:
            pass  # already surfaced by _on_done

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                reply = await self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=self._batch,
                    WaitTimeSeconds=self._wait,
                    AttributeNames=["ApproximateReceiveCount"],
                )
                messages = reply.get("Messages", [])
                if messages:
                    await self.handle_batch(messages)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push consumer: receive failed; backing off", extra={"delay": delay})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 30.0)

    async def handle_batch(self, messages: list[dict[str, Any]]) -> None:
        done = await asyncio.gather(*(self._handle(m) for m in messages))
        for ok in done:
            SQS_MESSAGES.labels("push", "processed" if ok else "failed").inc()
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, (m, ok) in enumerate(zip(messages, done, strict=True))
            if ok
        ]
        if entries:
            reply = await self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
            for failure in reply.get("Failed", []):
                log.warning("push consumer: delete failed", extra={"error": failure.get("Message")})

    async def _handle(self, message: dict[str, Any]) -> bool:
        try:
            event = event_from_body(message.get("Body", ""))
        except InvalidEvent as exc:
            log.warning(
                "push consumer: invalid message left for the dead-letter queue",
                extra={
                    "message_id": message.get("MessageId"),
                    "error": str(exc),
                    "receive_count": message.get("Attributes", {}).get("ApproximateReceiveCount"),
                },
            )
            return False
        try:
            await self._notifier.handle(event)
        except RetryLater as exc:
            log.warning("push consumer: will retry", extra={"event_id": str(event.id), "error": str(exc)})
            return False
        except Exception:
            log.exception("push consumer: event failed", extra={"event_id": str(event.id)})
            return False
        self.handled += 1
        return True
