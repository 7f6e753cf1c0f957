"""One SQS record through one processor: parse the S3 event, claim the step (idempotency),
do the work, record the outcome, publish its events. Shared by every handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from core.errors import Transient, as_transient
from core.events import Event
from core.resources import PROCESSORS
from core.status import UploadStatus
from core.tracing import from_object_metadata, to_message_attributes
from processors.common import originals, store
from processors.common.outcome import Rejected, StepOutcome
from processors.common.runtime import Runtime, runtime_for
from processors.common.s3event import ObjectRef, object_ref
from processors.common.store import UploadRow

log = logging.getLogger(__name__)

Work = Callable[[Runtime, ObjectRef, UploadRow], StepOutcome]
_TIMEOUTS = {spec.name: spec.timeout_seconds for spec in PROCESSORS}
_tracer = trace.get_tracer("buildpeer.processors")
_metrics = Metrics(namespace="BuildPeer", service="processors")


def publish(runtime: Runtime, events: Iterable[Event]) -> None:
    """Publish outbox events to their SNS topics, then mark them published."""
    by_tenant: dict[Any, list[Any]] = {}
    for event in events:
        runtime.sns.publish(
            TopicArn=runtime.topic_arn(event.type),
            Message=event.to_json().decode(),
            MessageAttributes={
                "type": {"DataType": "String", "StringValue": event.type.value},
                **to_message_attributes(),
            },
        )
        by_tenant.setdefault(event.tenant_id, []).append(event.id)
    for tenant_id, ids in by_tenant.items():
        runtime.run(store.mark_published(runtime.pool, tenant_id, ids))


def delete_objects(runtime: Runtime, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        runtime.s3.delete_objects(
            Bucket=runtime.settings.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )


def process_record(
    runtime: Runtime, body: str, processor: str, work: Work, *, delivery: str | None = None
) -> str:
    """Process one message body; returns what happened (for logs and tests). Raises to
    have the message retried (and dead-lettered after the third receive). ``delivery`` is
    the SQS message id (see :func:`store.claim`)."""
    ref = object_ref(body)
    if ref is None:
        return "ignored: not an upload original"
    if ref.bucket != runtime.settings.bucket:
        return f"ignored: bucket {ref.bucket}"
    claim = runtime.run(
        store.claim(
            runtime.pool,
            ref,
            processor,
            in_progress_seconds=_TIMEOUTS.get(processor, 300),
            delivery=delivery,
        )
    )
    if claim.kind == "overwrite" and claim.upload is not None:
        originals.reject_overwrite(
            runtime.s3, ref, claim.upload, processor=processor, recorded=claim.recorded
        )
        return "overwrite_rejected"
    if claim.kind == "duplicate":
        publish(runtime, claim.pending)
        return "duplicate"
    if claim.kind != "run" or claim.upload is None:
        log.info("step skipped", extra={"processor": processor, "key": ref.key, "why": claim.why})
        return f"{claim.kind}: {claim.why}"
    parent = from_object_metadata(_object_metadata(runtime, ref))
    with _tracer.start_as_current_span(
        f"process {processor}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"buildpeer.processor": processor, "buildpeer.upload_id": str(claim.upload.upload_id)},
    ) as span:
        try:
            outcome = work(runtime, ref, claim.upload)
        except Rejected as exc:
            outcome = StepOutcome.failed(exc.reason, exc.message)
        except Exception as exc:
            gone = originals.is_missing(exc) and runtime.run(
                store.current_status(runtime.pool, ref.tenant_id, ref.upload_id)
            ) in (UploadStatus.FAILED, UploadStatus.DELETED, None)
            if gone:
                # the upload failed or was deleted meanwhile and its original with it: nothing
                # left to read, and nothing to retry
                outcome = StepOutcome(state="skipped", result={"skipped": "original deleted"})
            else:
                span.record_exception(exc)
                runtime.run(store.release(runtime.pool, ref, processor, f"{type(exc).__name__}: {exc}"))
                raise
        span.set_attribute("buildpeer.outcome", outcome.state)
        finished = runtime.run(store.finish(runtime.pool, ref, processor, outcome))
        delete_objects(runtime, finished.delete_keys)
        if finished.delete_original is not None:
            originals.delete_original(runtime.s3, runtime.settings.bucket, finished.delete_original)
        publish(runtime, finished.events)
    return outcome.state


def _object_metadata(runtime: Runtime, ref: ObjectRef) -> dict[str, str]:
    """The object's user metadata (the uploader's trace context); empty when unreadable:
    tracing never fails a record."""
    try:
        head = runtime.s3.head_object(**ref.get_kwargs())
    except Exception:
        return {}
    return dict(head.get("Metadata") or {})


def handle_batch(event: dict[str, Any], context: Any, processor: str, work: Work) -> dict[str, Any]:
    """The Lambda entry point's body: an SQS batch in, ``{"batchItemFailures": [...]}`` out."""
    runtime = runtime_for(context)
    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> None:
        try:
            outcome = process_record(runtime, record.body, processor, work, delivery=record.message_id)
        except Exception as exc:
            error = as_transient(exc)
            if not isinstance(error, Transient):
                log.exception(
                    "record failed", extra={"processor": processor, "message_id": record.message_id}
                )
                raise
            log.warning(
                "record failed on a transient error; retrying later",
                extra={"processor": processor, "message_id": record.message_id, "error": str(error)},
            )
            note_retry_later(context, record.message_id)
            if error is exc:
                raise
            raise error from exc
        log.debug("record processed", extra={"processor": processor, "outcome": outcome})

    started = time.perf_counter()
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=batch, context=context
    )
    _emit_metrics(processor, len(event.get("Records", [])), response, time.perf_counter() - started)
    return dict(response)


def note_retry_later(context: Any, message_id: str) -> None:
    """Tell an invoker that keeps ``context.retry_later`` (the local worker) that this
    record failed on a transient error; Lambda's context has none, SQS just redelivers."""
    retry_later = getattr(context, "retry_later", None)
    if isinstance(retry_later, set):
        retry_later.add(message_id)


def _emit_metrics(processor: str, records: int, response: Any, seconds: float) -> None:
    """CloudWatch EMF metrics of one batch, as a structured log line that Lambda's log
    pipeline turns into metrics. ``buildpeer worker`` turns them off
    (``POWERTOOLS_METRICS_DISABLED``): it exports the same facts to Prometheus."""
    if is_metrics_disabled():  # nothing to add: a disabled flush would not clear it either
        return
    failed = len(response.get("batchItemFailures", []))
    _metrics.add_dimension(name="processor", value=processor)
    _metrics.add_metric(name="RecordsProcessed", unit=MetricUnit.Count, value=records - failed)
    _metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=failed)
    _metrics.add_metric(name="BatchDuration", unit=MetricUnit.Milliseconds, value=seconds * 1000)
    _metrics.flush_metrics()
