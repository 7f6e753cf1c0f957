"""One upload, one trace: the context crosses S3 object metadata and SNS → SQS message
attributes (in memory, and through moto over HTTP), recorded by an in-memory exporter."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import resources
from core.settings import Settings
from core.tracing import (
    TracingError,
    build_provider,
    from_message_attributes,
    from_object_metadata,
    to_message_attributes,
    to_object_metadata,
)
from devstack.aws import client, provision
from server.telemetry import shutdown_tracing
from tests.infra.conftest import MotoProcess


@pytest.fixture
def spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _lambda_shape(attributes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """How a Lambda SQS event record spells message attributes."""
    return {k: {"stringValue": v["StringValue"], "dataType": v["DataType"]} for k, v in attributes.items()}


def test_context_round_trips_api_to_processor_to_hub(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    with tracer.start_as_current_span("api.create_upload"):
        metadata = to_object_metadata()
    assert set(metadata) == {"traceparent"}
    with tracer.start_as_current_span("processor.scan", context=from_object_metadata(metadata)):
        attributes = to_message_attributes()
    with tracer.start_as_current_span(
        "hub.publish", context=from_message_attributes(_lambda_shape(attributes))
    ):
        pass

    api, scan, hub = exporter.get_finished_spans()
    assert len({api.context.trace_id, scan.context.trace_id, hub.context.trace_id}) == 1
    assert scan.parent is not None and scan.parent.span_id == api.context.span_id
    assert hub.parent is not None and hub.parent.span_id == scan.context.span_id


def test_missing_or_malformed_context_starts_a_new_trace(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    for context in (
        from_object_metadata(None),
        from_object_metadata({"traceparent": "not-a-traceparent"}),
        from_message_attributes({"traceparent": {"DataType": "Number", "StringValue": "00-zz"}}),
        from_message_attributes({"other": {"StringValue": "x"}}),
    ):
        with tracer.start_as_current_span("orphan", context=context):
            pass
    assert all(span.parent is None for span in exporter.get_finished_spans())
    assert to_object_metadata() == {}  # no current span: nothing to carry


def test_context_survives_s3_metadata_and_sns_to_sqs_raw_delivery(
    moto: MotoProcess, spans: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    tracer, exporter = spans
    settings = Settings(aws_endpoint_url=moto.url, stack="bp-trace", bucket="bp-trace-uploads")
    provisioned = provision(settings)
    s3, sns, sqs = client(settings, "s3"), client(settings, "sns"), client(settings, "sqs")
    key = "tenant-t/project-p/uploads/u/original/a.jpg"

    with tracer.start_as_current_span("api.complete_upload"):
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x", Metadata=to_object_metadata())
    head = s3.head_object(Bucket=settings.bucket, Key=key)
    with tracer.start_as_current_span("processor.metadata", context=from_object_metadata(head["Metadata"])):
        sns.publish(
            TopicArn=provisioned.topic_arns["upload-completed"],
            Message=json.dumps({"type": "upload.completed"}),
            MessageAttributes=to_message_attributes(),
        )
    events_queue = provisioned.queue_urls[resources.CONSUMERS[0].name]
    (message,) = sqs.receive_message(
        QueueUrl=events_queue, MessageAttributeNames=["All"], WaitTimeSeconds=5, MaxNumberOfMessages=1
    )["Messages"]
    assert json.loads(message["Body"]) == {"type": "upload.completed"}  # raw delivery
    with tracer.start_as_current_span(
        "hub.fan_out", context=from_message_attributes(message["MessageAttributes"])
    ):
        pass

    api, processor, hub = exporter.get_finished_spans()
    assert api.context.trace_id == processor.context.trace_id == hub.context.trace_id
    assert processor.parent is not None and processor.parent.span_id == api.context.span_id
    assert hub.parent is not None and hub.parent.span_id == processor.context.span_id


def test_exporter_choice() -> None:
    assert build_provider("none", "svc") is None
    for name in ("console", "otlp"):
        provider = build_provider(name, "bp-server")
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "bp-server"
        shutdown_tracing(provider)
    exporter = InMemorySpanExporter()
    provider = build_provider("none", "svc", exporter=exporter)
    assert provider is not None
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]
    shutdown_tracing(provider)
    with pytest.raises(TracingError, match="expected one of none, otlp, console"):
        build_provider("jaeger", "svc")
