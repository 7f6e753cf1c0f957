"""The AWS side of the local stack: an in-process moto server and the resources of
:mod:`core.resources` provisioned into any endpoint (moto here, or the tests' own)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import boto3

from core import resources
from core.settings import Settings
from devstack.process import free_port, port_open, wait_until

log = logging.getLogger(__name__)
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(45660)
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_until(lambda: port_open(self.port), 20, "moto server")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def client(settings: Settings, service: str) -> Any:
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        kwargs.update(DUMMY_CREDENTIALS)
    return boto3.client(service, **kwargs)  # type: ignore[call-overload]


@dataclass
class Provisioned:
    """ARNs and URLs of what :func:`provision` created, by logical name."""

    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    topic_arns: dict[str, str] = field(default_factory=dict)


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _queue_with_dlq(sqs: Any, stack: str, name: str, visibility: int) -> tuple[str, str]:
    _, dlq_arn = _queue(
        sqs,
        resources.dead_letter_queue_name(stack, name),
        {"MessageRetentionPeriod": str(14 * 86400)},
    )
    return _queue(
        sqs,
        resources.queue_name(stack, name),
        {
            "VisibilityTimeout": str(visibility),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": resources.MAX_RECEIVE_COUNT}
            ),
        },
    )


def provision(settings: Settings, *, visibility_override: int | None = None) -> Provisioned:
    """Create (idempotently) the bucket, queues, dead-letter queues, topics, subscriptions,
    the S3→EventBridge rule and a verified SES sender. ``visibility_override`` shortens the
    processors' visibility timeout for tests that wait for a redelivery."""
    out = Provisioned()
    s3, sqs, sns, events = (client(settings, n) for n in ("s3", "sqs", "sns", "events"))
    stack = settings.stack

    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if settings.bucket not in existing:
        s3.create_bucket(Bucket=settings.bucket)
    s3.put_bucket_cors(
        Bucket=settings.bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(settings.cors_origins),
                    "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )
    s3.put_bucket_notification_configuration(
        Bucket=settings.bucket,
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )

    for spec in resources.PROCESSORS:
        url, arn = _queue_with_dlq(sqs, stack, spec.name, visibility_override or spec.visibility_timeout)
        out.queue_urls[spec.name], out.queue_arns[spec.name] = url, arn
    for consumer in resources.CONSUMERS:
        url, arn = _queue_with_dlq(sqs, stack, consumer.name, consumer.visibility_timeout)
        out.queue_urls[consumer.name], out.queue_arns[consumer.name] = url, arn

    for topic in resources.TOPICS:
        out.topic_arns[topic] = sns.create_topic(Name=resources.topic_name(stack, topic))["TopicArn"]
        for consumer in resources.CONSUMERS:
            sns.subscribe(
                TopicArn=out.topic_arns[topic],
                Protocol="sqs",
                Endpoint=out.queue_arns[consumer.name],
                Attributes={"RawMessageDelivery": "true"},
            )

    rule = resources.event_rule_name(stack)
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [settings.bucket]}},
            }
        ),
        State="ENABLED",
    )
    events.put_targets(
        Rule=rule,
        Targets=[{"Id": spec.name, "Arn": out.queue_arns[spec.name]} for spec in resources.PROCESSORS],
    )

    sender = settings.email_from.rsplit("<", 1)[-1].rstrip(">").strip()
    try:
        client(settings, "ses").verify_email_identity(EmailAddress=sender)
    except Exception as exc:  # SES is optional in some emulators; digests may use SMTP
        log.warning("could not verify SES sender", extra={"error": str(exc)})
    return out
