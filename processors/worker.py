"""``buildpeer worker``: the local Lambda runtime.

Long-polls each processor queue (batches of 10), invokes the very handlers AWS would run
with the same SQS event shape, and deletes only the messages the handler did not report
in ``batchItemFailures``; failed ones reappear after the visibility timeout and go to the
dead-letter queue after the third receive. Each queue has a bounded number of batches in
flight. Beside the pollers: a dead-letter watcher (the ``deadletter`` handler on every
processor DLQ) and the sweeper (stuck uploads, interrupted event publishing).

Shutdown: stop receiving, let in-flight batches finish within a deadline, then close.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aioboto3

from core import resources
from core.metrics import PROCESSOR_DURATION, SQS_MESSAGES
from core.settings import Settings
from processors.common.runtime import Runtime
from processors.deadletter import handler as deadletter_handler
from processors.document import handler as document_handler
from processors.image import handler as image_handler
from processors.metadata import handler as metadata_handler
from processors.scan import handler as scan_handler
from processors.sweeper.handler import sweep

# The worker exports processor metrics to Prometheus; the handlers' CloudWatch EMF lines
# (what Lambda turns into metrics) would only be noise on this process's stdout.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
HANDLERS: dict[str, Handler] = {
    "scan": scan_handler.handler,
    "metadata": metadata_handler.handler,
    "image": image_handler.handler,
    "document": document_handler.handler,
}
BATCH_SIZE = 10
DRAIN_SECONDS = 60.0


@dataclass
class LocalContext:
    """The parts of the Lambda context object handlers and Powertools use; ``runtime``
    hands the worker's clients and pool to the handler."""

    function_name: str
    runtime: Runtime
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """SQS ReceiveMessage results → the event AWS Lambda's SQS trigger delivers."""
    records = []
    for m in messages:
        body = m["Body"]
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": body,
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


@dataclass
class QueueStats:
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Queue:
    name: str  # function name, e.g. "scan" or "scan-dlq"
    url: str
    arn: str
    handler: Handler
    concurrency: int
    timeout_seconds: int
    memory_mb: int


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        poll_wait_seconds: int = 20,
        sweep_interval_seconds: float = 60.0,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.settings = settings
        self.poll_wait_seconds = poll_wait_seconds
        self.sweep_interval_seconds = sweep_interval_seconds
        self.drain_seconds = drain_seconds
        self.stats: dict[str, QueueStats] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self.runtime: Runtime | None = None
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        concurrency = settings.worker_concurrency
        runtime = Runtime(settings, pool_max=max(4, concurrency * 2))
        self.runtime = runtime
        executor = ThreadPoolExecutor(
            max_workers=concurrency * len(HANDLERS) + 2, thread_name_prefix="buildpeer-handler"
        )
        session = aioboto3.Session()
        kwargs: dict[str, Any] = {"region_name": settings.aws_region}
        if settings.aws_endpoint_url:
            kwargs.update(
                endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        try:
            async with session.client("sqs", **kwargs) as sqs:
                queues = await self._queues(sqs, concurrency)
                tasks = [asyncio.create_task(self._poll(sqs, q, stop, executor), name=q.name) for q in queues]
                tasks.append(asyncio.create_task(self._sweep(stop, executor), name="sweeper"))
                self.started.set()
                log.info("worker started", extra={"queues": [q.name for q in queues]})
                try:
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await self._drain()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            await asyncio.to_thread(runtime.close)
            log.info("worker stopped")

    async def _queues(self, sqs: Any, concurrency: int) -> list[_Queue]:
        out = []
        for spec in resources.PROCESSORS:
            for name, queue_name, handler, slots in (
                (
                    spec.name,
                    resources.queue_name(self.settings.stack, spec.name),
                    HANDLERS[spec.name],
                    concurrency,
                ),
                (
                    f"{spec.name}-dlq",
                    resources.dead_letter_queue_name(self.settings.stack, spec.name),
                    deadletter_handler.handler,
                    1,
                ),
            ):
                url = (await sqs.get_queue_url(QueueName=queue_name))["QueueUrl"]
                attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                out.append(
                    _Queue(
                        name,
                        url,
                        attrs["Attributes"]["QueueArn"],
                        handler,
                        slots,
                        spec.timeout_seconds,
                        spec.memory_mb,
                    )
                )
                self.stats[name] = QueueStats()
        return out

    async def _poll(self, sqs: Any, queue: _Queue, stop: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        slots = asyncio.Semaphore(queue.concurrency)
        backoff = 1.0
        stopped = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                acquire = asyncio.create_task(slots.acquire())
                await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not acquire.done():  # every slot busy and asked to stop: stop polling
                    acquire.cancel()
                    break
                if stop.is_set():
                    slots.release()
                    break
                receive = asyncio.create_task(
                    sqs.receive_message(
                        QueueUrl=queue.url,
                        MaxNumberOfMessages=BATCH_SIZE,
                        WaitTimeSeconds=self.poll_wait_seconds,
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    )
                )
                await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    slots.release()
                    break
                try:
                    messages = receive.result().get("Messages", [])
                    backoff = 1.0
                except Exception as exc:
                    slots.release()
                    log.warning("receive failed", extra={"queue": queue.name, "error": str(exc)})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                if not messages:
                    slots.release()
                    continue
                task = asyncio.create_task(self._invoke(sqs, queue, messages, executor))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                task.add_done_callback(lambda _t: slots.release())
        finally:
            stopped.cancel()

    async def _invoke(
        self, sqs: Any, queue: _Queue, messages: list[dict[str, Any]], executor: ThreadPoolExecutor
    ) -> None:
        stats = self.stats[queue.name]
        stats.batches += 1
        stats.messages += len(messages)
        assert self.runtime is not None
        event = sqs_event(messages, queue.arn, self.settings.aws_region)
        context = LocalContext(
            function_name=f"{self.settings.stack}-{queue.name}",
            runtime=self.runtime,
            memory_limit_in_mb=queue.memory_mb,
            timeout_seconds=queue.timeout_seconds,
        )
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            response = await loop.run_in_executor(executor, queue.handler, event, context)
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:
            log.exception("handler raised; the whole batch will be retried", extra={"queue": queue.name})
            stats.failed += len(messages)
            SQS_MESSAGES.labels(queue.name, "failed").inc(len(messages))
            return
        finally:
            PROCESSOR_DURATION.labels(queue.name).observe(time.perf_counter() - started)
        done = [m for m in messages if m["MessageId"] not in failed]
        stats.failed += len(messages) - len(done)
        SQS_MESSAGES.labels(queue.name, "processed").inc(len(done))
        if len(done) < len(messages):
            SQS_MESSAGES.labels(queue.name, "failed").inc(len(messages) - len(done))
        for start in range(0, len(done), BATCH_SIZE):
            chunk = done[start : start + BATCH_SIZE]
            try:
                result = await sqs.delete_message_batch(
                    QueueUrl=queue.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                    ],
                )
                stats.deleted += len(result.get("Successful", []))
            except Exception as exc:  # redelivery is harmless: the handlers are idempotent
                log.warning("delete failed", extra={"queue": queue.name, "error": str(exc)})

    async def _sweep(self, stop: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        assert self.runtime is not None
        runtime = self.runtime
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await loop.run_in_executor(executor, sweep, runtime)
            except Exception:
                log.exception("sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), self.sweep_interval_seconds)
            except TimeoutError:
                pass

    async def _drain(self) -> None:
        if not self._inflight:
            return
        log.info("draining in-flight batches", extra={"batches": len(self._inflight)})
        _, pending = await asyncio.wait(set(self._inflight), timeout=self.drain_seconds)
        for task in pending:
            task.cancel()  # the handler thread finishes on its own; its messages reappear


async def run_worker(settings: Settings, stop: asyncio.Event, **options: Any) -> None:
    """Run the worker until ``stop`` is set (``buildpeer dev`` runs this as a task)."""
    await Worker(settings, **options).run(stop)


def main(settings: Settings) -> int:
    """``buildpeer worker``: run until SIGINT/SIGTERM."""
    import signal

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(runner())
    return 0
