"""``buildpeer worker``: the local Lambda runtime.

Each processor queue is one :class:`core.queue_consumer.QueueConsumer` (batches of 10, a
bounded number of invocations in flight): the worker invokes the very handlers AWS would
run with the same SQS event shape, and deletes only the messages the handler did not report
in ``batchItemFailures``. A record that failed on a transient error (PostgreSQL or clamd
down, a step in progress) is retried soon and holds the queue until PostgreSQL answers;
any other failure reappears after the visibility timeout and goes to the dead-letter queue
after the third receive. Beside the pollers: a dead-letter watcher (the ``deadletter``
handler on every processor DLQ) and the sweeper (stuck uploads, interrupted event
publishing).

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
from core.db import PING_TIMEOUT, ping
from core.metrics import PROCESSOR_DURATION
from core.queue_consumer import ConsumerConfig, Outcome, QueueConsumer, Result
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
    # message ids whose record failed on a transient error (the pipeline notes them): the
    # worker retries those soon and holds the queue, where Lambda only sees a failure
    retry_later: set[str] = field(default_factory=set)

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
    queue_name: str
    arn: str
    visibility: int
    handler: Handler
    concurrency: int
    timeout_seconds: int
    memory_mb: int


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        poll_wait_seconds: int | None = None,
        sweep_interval_seconds: float = 60.0,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.settings = settings
        # A stop waits for the poll in flight (its messages would otherwise be hidden).
        self.poll_wait_seconds = (
            settings.worker_wait_seconds if poll_wait_seconds is None else poll_wait_seconds
        )
        self.sweep_interval_seconds = sweep_interval_seconds
        self.drain_seconds = drain_seconds
        self.consumers: dict[str, QueueConsumer] = {}
        self.runtime: Runtime | None = None
        self.started = asyncio.Event()

    @property
    def stats(self) -> dict[str, QueueStats]:
        """Per queue: batches and messages received, deleted, failed (retried or poison)."""
        return {
            name: QueueStats(
                batches=c.stats.batches,
                messages=c.stats.messages,
                deleted=c.stats.deleted,
                failed=c.stats.retried + c.stats.poisoned,
            )
            for name, c in self.consumers.items()
        }

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
                for q in queues:
                    self.consumers[q.name] = self._consumer(sqs, q, executor)
                sweeper = asyncio.create_task(self._sweep(stop, executor), name="sweeper")
                try:
                    for consumer in self.consumers.values():
                        await consumer.start()
                    self.started.set()
                    log.info("worker started", extra={"queues": [q.name for q in queues]})
                    await self._until_stopped(stop, sweeper)
                finally:
                    # Stop receiving everywhere at once; in-flight batches finish within the
                    # drain deadline, then are cancelled (their messages reappear).
                    await asyncio.gather(*(c.stop() for c in self.consumers.values()))
                    sweeper.cancel()
                    await asyncio.gather(sweeper, return_exceptions=True)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            await asyncio.to_thread(runtime.close)
            log.info("worker stopped")

    async def _until_stopped(self, stop: asyncio.Event, sweeper: asyncio.Task[None]) -> None:
        """Until ``stop`` is set; a crashed queue loop or sweeper ends the worker with its error."""
        stopped = asyncio.create_task(stop.wait())
        watched: set[asyncio.Task[Any]] = {stopped, sweeper}
        watched.update(c.task for c in self.consumers.values() if c.task is not None)
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if stop.is_set():
            return
        for name, consumer in self.consumers.items():
            if consumer.error is not None:
                raise RuntimeError(f"worker: the {name} queue loop crashed") from consumer.error
        if sweeper.done() and not sweeper.cancelled() and sweeper.exception() is not None:
            raise RuntimeError("worker: the sweeper crashed") from sweeper.exception()
        raise RuntimeError("worker: a queue loop ended unexpectedly")

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
                attrs = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn", "VisibilityTimeout"]
                )
                out.append(
                    _Queue(
                        name,
                        queue_name,
                        attrs["Attributes"]["QueueArn"],
                        int(attrs["Attributes"]["VisibilityTimeout"]),
                        handler,
                        slots,
                        spec.timeout_seconds,
                        spec.memory_mb,
                    )
                )
        return out

    def _consumer(self, sqs: Any, queue: _Queue, executor: ThreadPoolExecutor) -> QueueConsumer:
        """The queue loop of one function: batches of 10, ``concurrency`` invocations in
        flight, visibility extended up to the function's timeout, held while PostgreSQL is
        down (a record that failed on a :class:`~core.errors.Transient` error answers retry)."""
        return QueueConsumer(
            sqs,
            ConsumerConfig(
                name=queue.name,
                queue_name=queue.queue_name,
                wait_seconds=self.poll_wait_seconds,
                batch_size=BATCH_SIZE,
                batches_in_flight=queue.concurrency,
                stop_timeout=self.drain_seconds,
                visibility_timeout=queue.visibility,
                max_extend_seconds=float(queue.timeout_seconds),
            ),
            lambda messages: self._invoke(queue, messages, executor),
            probe=self._probe_database,
            log=log,
        )

    async def _probe_database(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        await asyncio.to_thread(lambda: runtime.run(ping(runtime.pool), PING_TIMEOUT * 2))

    async def _invoke(
        self, queue: _Queue, messages: list[dict[str, Any]], executor: ThreadPoolExecutor
    ) -> list[Result]:
        """One invocation of the function's handler, as Lambda's SQS trigger makes it; a
        record it reports in ``batchItemFailures`` answers retry when it failed on a
        transient error (``context.retry_later``), else poison."""
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
        finally:
            PROCESSOR_DURATION.labels(queue.name).observe(time.perf_counter() - started)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        results = []
        for m in messages:
            if m["MessageId"] not in failed:
                results.append(Result(Outcome.DONE, "processed"))
            elif m["MessageId"] in context.retry_later:
                results.append(Result(Outcome.RETRY, "retry"))
            else:
                results.append(Result(Outcome.POISON, "failed"))
        return results

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
