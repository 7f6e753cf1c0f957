"""The messaging resources of the system, defined once.

The local stack provisions exactly these (names and settings) into the emulator, and
the CloudFormation templates in ``infra/`` are checked against them by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.events import TOPIC_FOR_TYPE

MAX_RECEIVE_COUNT = 3  # the seed: three attempts, then the dead-letter queue
VISIBILITY_FACTOR = 6  # AWS guidance: visibility ≥ 6x the function timeout


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """A Lambda-style processor fed by its own SQS queue (seed: memory and timeout)."""

    name: str
    memory_mb: int
    timeout_seconds: int

    @property
    def visibility_timeout(self) -> int:
        return self.timeout_seconds * VISIBILITY_FACTOR


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A queue subscribed to every SNS topic (the hub's events, the push notifier)."""

    name: str
    visibility_timeout: int = 60


PROCESSORS: tuple[ProcessorSpec, ...] = (
    ProcessorSpec("scan", memory_mb=3008, timeout_seconds=300),
    ProcessorSpec("metadata", memory_mb=512, timeout_seconds=60),
    ProcessorSpec("image", memory_mb=1024, timeout_seconds=300),
    ProcessorSpec("document", memory_mb=2048, timeout_seconds=300),
)
CONSUMERS: tuple[ConsumerSpec, ...] = (ConsumerSpec("events"), ConsumerSpec("push"))
TOPICS: tuple[str, ...] = tuple(TOPIC_FOR_TYPE.values())


@dataclass(frozen=True, slots=True)
class EmailEventsSpec:
    """SES feedback: the digest's configuration set publishes bounce and complaint events
    to their own SNS topic, which feeds this queue (raw delivery, with a dead-letter queue);
    the server's email-events consumer records suppressions from it."""

    name: str = "email-events"  # queue and topic
    visibility_timeout: int = 60
    event_types: tuple[str, ...] = ("bounce", "complaint")  # SES MatchingEventTypes


EMAIL_EVENTS = EmailEventsSpec()


def ses_configuration_set_name(stack: str) -> str:
    return f"{stack}-digest"


def queue_name(stack: str, name: str) -> str:
    return f"{stack}-{name}"


def dead_letter_queue_name(stack: str, name: str) -> str:
    return f"{stack}-{name}-dlq"


def topic_name(stack: str, topic: str) -> str:
    return f"{stack}-{topic}"


def event_rule_name(stack: str) -> str:
    return f"{stack}-object-created"
