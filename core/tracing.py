"""OpenTelemetry for every process (server, Lambda processors, workers): the tracer provider
chosen by ``BUILDPEER_OTEL_EXPORTER`` and the W3C trace context carried across the hops an
upload takes — S3 object metadata (API → processors) and SQS/SNS message attributes
(processors → hub) — so one upload is one trace.

Only ``traceparent`` and ``tracestate`` travel (no baggage: it could carry user data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

EXPORTERS = ("none", "otlp", "console")
TRACE_KEYS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingError(ValueError):
    """An unknown exporter name."""


def build_provider(
    exporter_name: str, service_name: str, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """A provider exporting with ``exporter_name`` (``none`` → ``None``: no spans are recorded,
    incoming context still propagates). ``exporter`` overrides the named one (tests: in-memory).
    OTLP reads the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers)."""
    if exporter_name not in EXPORTERS:
        raise TracingError(
            f"unknown trace exporter {exporter_name!r}: expected one of {', '.join(EXPORTERS)}"
        )
    if exporter is None:
        if exporter_name == "none":
            return None
        if exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _carrier(context: Context | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return {k: v for k, v in carrier.items() if k in TRACE_KEYS}


def to_object_metadata(context: Context | None = None) -> dict[str, str]:
    """S3 user metadata (``Metadata=`` of put_object / create_multipart_upload, or the
    ``x-amz-meta-*`` headers a presigned URL signs) carrying the current trace context."""
    return _carrier(context)


def from_object_metadata(metadata: Mapping[str, str] | None) -> Context:
    """The trace context in an object's metadata (head_object/get_object ``Metadata``, whose
    keys S3 lower-cases); an empty context when there is none or it is malformed."""
    lowered = {k.lower().removeprefix("x-amz-meta-"): v for k, v in (metadata or {}).items()}
    return _PROPAGATOR.extract({k: lowered[k] for k in TRACE_KEYS if k in lowered})


def to_message_attributes(context: Context | None = None) -> dict[str, dict[str, str]]:
    """``MessageAttributes=`` for SQS send_message / SNS publish (SNS raw delivery hands them
    on to the subscribed queues)."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in _carrier(context).items()}


def _attribute_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # boto3: StringValue, Lambda SQS event: stringValue, SNS JSON: Value
        for key in ("StringValue", "stringValue", "Value"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return None


def from_message_attributes(attributes: Mapping[str, Any] | None) -> Context:
    """The trace context in SQS/SNS message attributes, in any of the shapes they arrive in:
    boto3 ``receive_message``, a Lambda SQS event record, or an SNS notification envelope."""
    carrier = {}
    for key, value in (attributes or {}).items():
        text = _attribute_value(value)
        if key.lower() in TRACE_KEYS and text is not None:
            carrier[key.lower()] = text
    return _PROPAGATOR.extract(carrier)
