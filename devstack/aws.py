"""The AWS side of the local stack: an in-process moto server and the resources of
:mod:`core.resources` provisioned into any endpoint (moto here, or the tests' own)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from core import quarantine, resources
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
        self._server = _motoserver(self.port)
        self._server.start()
        wait_until(lambda: port_open(self.port), 20, "moto server")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _motoserver(port: int) -> Any:
    """moto's threaded server with its app wrapped in :class:`PostObjectHeaders` (form
    uploads answer with ``ETag`` and ``Location``, as S3 does)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    from devstack.moto_post import PostObjectHeaders

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = PostObjectHeaders(DomainDispatcherApplication(create_backend_app))
            self._server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server(ip_address="127.0.0.1", port=port, verbose=False)


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


POLICY_PROBE_KEY = "buildpeer-policy-probe"


def _put_quarantine_policy(s3: Any, bucket: str) -> bool:
    """Deny quarantined objects to all but the scanner, as the template does — where the S3
    under it evaluates the policy's conditions. moto does not: it denies every request a
    conditional Deny statement names (untagged objects too), so after putting the policy
    an untagged probe object is read back, and on such an emulator the policy is removed
    again (logged). Returns whether the policy is in force."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(quarantine.bucket_policy(bucket)))
    s3.put_object(Bucket=bucket, Key=POLICY_PROBE_KEY, Body=b"probe")
    try:
        s3.get_object(Bucket=bucket, Key=POLICY_PROBE_KEY)["Body"].read()
    except ClientError as exc:
        s3.delete_bucket_policy(Bucket=bucket)
        log.warning(
            "this S3 does not evaluate bucket policy conditions; quarantine deny policy not applied",
            extra={"bucket": bucket, "error": str(exc)},
        )
        return False
    finally:
        versions = s3.list_object_versions(Bucket=bucket, Prefix=POLICY_PROBE_KEY)
        for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    return True


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
                    "AllowedMethods": ["GET", "PUT", "POST", "DELETE", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag", "Location"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )
    s3.put_bucket_notification_configuration(
        Bucket=settings.bucket,
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )
    # as the template: versions kept (the processors pin the one they scanned and delete any
    # overwrite), quarantined objects denied to all but the scanner and expired after 30 days
    s3.put_bucket_versioning(Bucket=settings.bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket, LifecycleConfiguration={"Rules": [quarantine.lifecycle_rule()]}
    )
    _put_quarantine_policy(s3, settings.bucket)

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

    feedback = resources.EMAIL_EVENTS  # SES bounces/complaints → SNS → SQS (as the template)
    url, arn = _queue_with_dlq(sqs, stack, feedback.name, feedback.visibility_timeout)
    out.queue_urls[feedback.name], out.queue_arns[feedback.name] = url, arn
    topic = sns.create_topic(Name=resources.topic_name(stack, feedback.name))
    out.topic_arns[feedback.name] = topic["TopicArn"]
    sns.subscribe(
        TopicArn=out.topic_arns[feedback.name],
        Protocol="sqs",
        Endpoint=arn,
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
    _ses_feedback(settings, out.topic_arns[feedback.name])
    return out


def _ses_feedback(settings: Settings, topic_arn: str) -> None:
    """The digest's configuration set with its bounce/complaint event destination."""
    ses = client(settings, "ses")
    name = resources.ses_configuration_set_name(settings.stack)
    try:
        ses.create_configuration_set(ConfigurationSet={"Name": name})
        ses.create_configuration_set_event_destination(
            ConfigurationSetName=name,
            EventDestination={
                "Name": f"{name}-feedback",
                "Enabled": True,
                "MatchingEventTypes": list(resources.EMAIL_EVENTS.event_types),
                "SNSDestination": {"TopicARN": topic_arn},
            },
        )
    except Exception as exc:  # exists already (provisioning is idempotent) or no SES here
        if "AlreadyExists" not in type(exc).__name__ and "AlreadyExists" not in str(exc):
            log.warning("could not create the SES configuration set", extra={"error": str(exc)})
