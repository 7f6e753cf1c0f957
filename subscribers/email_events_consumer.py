"""The ``email-events`` queue (SES bounces and complaints) → :class:`FeedbackHandler`.

The loop is :class:`core.queue_consumer.QueueConsumer`; a body that is not an SES event
record is poison (dead-letter queue), a database outage is retried.
"""

from __future__ import annotations

import logging
from typing import Any

from core import resources
from core.errors import Transient, as_transient
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
from subscribers.email_feedback import FeedbackHandler, InvalidFeedback

log = logging.getLogger(__name__)


class EmailEventsConsumer(QueueComponent):
    name = "email-events-consumer"

    def __init__(
        self,
        sqs: Any,
        handler: FeedbackHandler,
        *,
        queue_name: str,
        wait_seconds: int = 20,
        probe: Probe | None = None,
    ) -> None:
        self._handler = handler
        self.recorded = 0
        self._consumer = QueueConsumer(
            sqs,
            ConsumerConfig(
                name=resources.EMAIL_EVENTS.name, queue_name=queue_name, wait_seconds=wait_seconds
            ),
            per_message(self._handle, 4, log),
            probe=probe,
            log=log,
        )

    @classmethod
    def queue_for(cls, stack: str) -> str:
        return resources.queue_name(stack, resources.EMAIL_EVENTS.name)

    async def _handle(self, message: Message) -> Result:
        try:
            self.recorded += await self._handler.handle(message.get("Body", ""))
        except InvalidFeedback as exc:
            log.warning("email-events: not an SES event record", extra={"error": str(exc)})
            return Result(Outcome.POISON, "invalid")
        except Exception as exc:
            if isinstance(as_transient(exc), Transient):
                return Result(Outcome.RETRY, "retry")
            raise
        return Result(Outcome.DONE, "processed")
