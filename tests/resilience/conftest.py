"""Helpers of the fault tests: an isolated stack name per test (own queues, topics and
bucket in the session's moto), queue counters read without taking messages, the upload
rows and events the tests feed in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from core.events import Event, EventType
from core.settings import Settings
from core.status import UploadStatus
from devstack.aws import Provisioned, provision
from devstack.aws import client as aws_client

# Short timers so the tests stay well inside the CI budget.
QUIET = {
    "events_wait_seconds": 1,
    "push_consumer_enabled": False,
    "digest_scheduler_enabled": False,
    "realtime_ping_seconds": 2.0,
    "realtime_pong_timeout_seconds": 1.5,
    "realtime_shutdown_seconds": 2.0,
}


def isolated_settings(settings: Settings, name: str, **overrides: Any) -> tuple[Settings, Provisioned]:
    s = settings.replace(stack=name, bucket=f"{name}-uploads", **{**QUIET, **overrides})
    return s, provision(s)


def queue_counts(settings: Settings, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) of a queue, read from its attributes: nothing is received."""
    attrs = aws_client(settings, "sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def status_event(t: Any, upload_id: uuid.UUID, status: UploadStatus) -> Event:
    etype = EventType.UPLOAD_COMPLETED if status is UploadStatus.UPLOADED else EventType.PROCESSING_COMPLETED
    return Event.new(
        etype,
        tenant_id=t.tenant_id,
        project_id=t.projects[0],
        upload_id=upload_id,
        user_id=t.users["field_worker"],
        status=status,
    )


def sns_publish(settings: Settings, provisioned: Provisioned, event: Event) -> None:
    topic = {"upload.completed": "upload-completed", "upload.failed": "upload-failed"}.get(
        event.type.value, "processing-completed"
    )
    aws_client(settings, "sns").publish(
        TopicArn=provisioned.topic_arns[topic], Message=event.to_json().decode()
    )


def poll(check: Callable[[], Any], within: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f}s")
        time.sleep(every)
