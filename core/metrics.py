"""Prometheus metrics shared by every package that runs in a long-lived process (the
server, the local worker, the notifiers). The server exposes them at ``/metrics``; on AWS
the Lambda processors report through CloudWatch instead."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SQS_MESSAGES = Counter(
    "buildpeer_sqs_messages_total", "SQS messages handled per queue and outcome", ["queue", "outcome"]
)
PROCESSOR_DURATION = Histogram(
    "buildpeer_processor_duration_seconds",
    "Processor handler invocation duration (one SQS batch)",
    ["processor"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
NOTIFICATIONS = Counter(
    "buildpeer_notifications_total", "Pushes and emails by channel and outcome", ["channel", "outcome"]
)
OVERWRITES_REJECTED = Counter(
    "buildpeer_overwrites_rejected_total",
    "New object versions of an upload's original that the processors refused and deleted",
)
