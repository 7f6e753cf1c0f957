"""Lambda on the processors' dead-letter queues: a message that failed three times marks
its upload ``failed`` (reason ``processing_failed``) and publishes ``upload-failed``."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from core.errors import Transient, as_transient
from core.resources import PROCESSORS
from core.status import ReasonCode
from processors.common import originals, store
from processors.common.pipeline import note_retry_later, publish
from processors.common.runtime import Runtime, runtime_for
from processors.common.s3event import InvalidS3Event, object_ref

log = logging.getLogger(__name__)
_NAMES = {spec.name for spec in PROCESSORS}


def processor_of(queue_arn: str, stack: str) -> str | None:
    """``arn:...:{stack}-{processor}-dlq`` → processor name."""
    name = queue_arn.rsplit(":", 1)[-1]
    if not (name.startswith(stack + "-") and name.endswith("-dlq")):
        return None
    candidate = name[len(stack) + 1 : -len("-dlq")]
    return candidate if candidate in _NAMES else None


def dead_letter(runtime: Runtime, body: str, queue_arn: str, message_id: str) -> str:
    processor = processor_of(queue_arn, runtime.settings.stack)
    if processor is None:
        return f"ignored: {queue_arn} is not a processor dead-letter queue"
    try:
        ref = object_ref(body)
    except InvalidS3Event as exc:
        log.error("unparseable dead letter dropped", extra={"queue": queue_arn, "error": str(exc)})
        return "ignored: not an S3 event"
    if ref is None:
        return "ignored: not an upload original"
    events = runtime.run(
        store.fail_step(
            runtime.pool,
            ref,
            processor,
            ReasonCode.PROCESSING_FAILED,
            {"error": f"{processor} failed repeatedly; message {message_id} dead-lettered"},
        )
    )
    failed = runtime.run(store.failed_original(runtime.pool, ref.tenant_id, ref.upload_id))
    if failed is not None:
        originals.delete_original(runtime.s3, runtime.settings.bucket, failed)
    publish(runtime, events)
    return f"failed {len(events)} event(s)"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    runtime = runtime_for(context)
    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> None:
        try:
            dead_letter(runtime, record.body, record.event_source_arn, record.message_id)
        except Exception as exc:
            if isinstance(as_transient(exc), Transient):
                note_retry_later(context, record.message_id)
            raise

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=batch, context=context
    )
    return dict(response)
