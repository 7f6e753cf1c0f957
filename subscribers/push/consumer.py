"""The push consumer: long-polls the ``push`` SQS queue (subscribed to the three SNS
topics with raw delivery) and hands each event to the notifier.

The queue loop is :class:`core.queue_consumer.QueueConsumer`. A message is deleted only
once handled. A bad message (or a bug) is left alone, so SQS redelivers it and, after
``maxReceiveCount``, parks it in the dead-letter queue. A transient failure (PostgreSQL
down, sends to retry) is retried soon, and the consumer takes no more messages until its
probe (PostgreSQL) answers: queued pushes wait out an outage instead of being dead-lettered.
"""

from __future__ import annotations

import logging
from typing import Any

from core import resources
from core.envelope import event_from_body
from core.errors import Transient, as_transient
from core.events import InvalidEvent
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
from subscribers.push.notifier import PushNotifier

log = logging.getLogger(__name__)

QUEUE = "push"


class PushConsumer(QueueComponent):
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
        concurrency: int = 10,
        batches_in_flight: int = 2,
        probe: Probe | None = None,
    ) -> None:
        self._notifier = notifier
        self.handled = 0
        self._consumer = QueueConsumer(
            sqs,
            ConsumerConfig(
                name=QUEUE,
                queue_name=queue_name,
                wait_seconds=wait_seconds,
                batch_size=batch_size,
                batches_in_flight=batches_in_flight,
                stop_timeout=stop_timeout,
            ),
            per_message(self._handle, concurrency, log),
            probe=probe,
            log=log,
        )

    @classmethod
    def queue_for(cls, stack: str) -> str:
        return resources.queue_name(stack, QUEUE)

    async def _handle(self, message: Message) -> Result:
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
            return Result(Outcome.POISON, "invalid")
        try:
            await self._notifier.handle(event)
        except Exception as exc:
            error = as_transient(exc)
            if isinstance(error, Transient):
                log.warning(
                    "push consumer: will retry", extra={"event_id": str(event.id), "error": str(error)}
                )
                return Result(Outcome.RETRY, "retry")
            log.exception("push consumer: event failed", extra={"event_id": str(event.id)})
            return Result(Outcome.POISON, "failed")
        self.handled += 1
        return Result(Outcome.DONE, "processed")
