"""One SQS consumer for every queue loop: the server's ``events``, the push notifier's
``push``, and the local Lambda runtime's processor queues and their dead-letter queues.

What it does with a queue:

- **Receives** batches of up to 10 with long polls, and starts the next receive while
  earlier batches are still being handled (at most ``batches_in_flight`` at once; a batch
  slot is taken *before* receiving, so nothing is received that cannot be worked on).
- **Hands** each batch to the owner's handler, which answers per message: ``DONE`` (the
  message is deleted), ``RETRY`` (a dependency is down or busy: the consumer is *held*), or
  ``POISON`` (left alone: SQS redelivers it after its visibility timeout and, after
  ``maxReceiveCount`` receives, moves it to the dead-letter queue). A handler that raises
  answers for the whole batch by the error: :class:`core.errors.Transient` means retry,
  anything else poison.
- **Extends** the visibility of a batch while it is being worked on (a heartbeat at half
  the visibility timeout), for at most ``max_extend_seconds``, so long work is not handed to
  a second receiver and a hung handler's messages still come back.
- **Holds** after a retry: it takes no more messages until the handler's ``probe`` (what
  the handler depends on, e.g. PostgreSQL) answers, probing with a growing delay. Every
  receive counts towards the queue's ``maxReceiveCount``, so receiving on a timer while the
  database is down would dead-letter the queued messages; held, a message is received once
  per outage, however long the outage. When the probe saw the outage, the messages retried
  during it are made visible again as soon as it answers; when it answered at once (what
  failed is something it does not check: clamd, a step another worker runs, FCM asking to
  retry), they come back after their visibility timeout, as on Lambda.
- **Backs off** when SQS itself fails (1, 2, 4 … 20 s), logging each attempt.
- **Stops** gracefully: no new receives, the receive in flight and the batches in hand
  finish, up to ``stop_timeout``; then the task is cancelled (its messages come back after
  their visibility timeout). A crash of the task is kept in :attr:`QueueConsumer.error`
  and logged; owners surface it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.errors import Transient, as_transient
from core.metrics import SQS_MESSAGES

Message = dict[str, Any]  # one entry of ReceiveMessage's ``Messages``
Probe = Callable[[], Awaitable[None]]

MAX_BATCH = 10  # SQS: ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch


class Outcome(StrEnum):
    DONE = "done"  # handled: delete
    RETRY = "retry"  # not now (a dependency is down): back soon, hold the consumer
    POISON = "poison"  # never: leave it for the dead-letter queue


@dataclass(frozen=True, slots=True)
class Result:
    """The handler's answer for one message; ``label`` is the metric outcome
    (``buildpeer_sqs_messages_total{queue, outcome}``), the outcome's name when empty."""

    outcome: Outcome
    label: str = ""

    @property
    def metric_label(self) -> str:
        return self.label or self.outcome.value


BatchHandler = Callable[[list[Message]], Awaitable[Sequence[Result]]]
MessageHandler = Callable[[Message], Awaitable[Result]]


# -- the decisions, as pure functions --------------------------------------------------------


def outcome_for(exc: BaseException) -> Outcome:
    """What an error means for its message: retry when it is transient, else poison."""
    return Outcome.RETRY if isinstance(as_transient(exc), Transient) else Outcome.POISON


def receive_count(message: Message) -> int:
    try:
        return max(1, int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")))
    except (TypeError, ValueError):
        return 1


def release_after_hold(failed_probes: int) -> bool:
    """Make the messages retried during a hold visible at once when it ends? Only when the
    probe saw the outage (it failed at least once): then what they needed is back. A probe
    that answered at once means they failed on something it does not check; they come back
    after their visibility timeout, which is what spaces their receives out."""
    return failed_probes > 0


def hold_delay(attempt: int, *, first: float = 0.5, maximum: float = 10.0) -> float:
    """Pause before the ``attempt``-th probe of a hold (0: probe at once)."""
    if attempt <= 0:
        return 0.0
    return min(first * 2 ** (attempt - 1), maximum)


def backoff(failures: int, *, first: float = 1.0, maximum: float = 20.0) -> float:
    """Pause after the ``failures``-th SQS failure in a row."""
    return min(first * 2 ** (max(1, failures) - 1), maximum)


def heartbeat_interval(visibility: int) -> float:
    """How often a batch in hand has its visibility extended (to the full timeout again)."""
    return max(0.5, visibility / 2)


@dataclass(frozen=True, slots=True)
class Sorted:
    done: list[Message]
    retry: list[Message]
    poison: list[Message]

    @property
    def holds(self) -> bool:
        """A retry means a dependency is down: take no more until the probe answers."""
        return bool(self.retry)


def sort_results(messages: Sequence[Message], results: Sequence[Result]) -> Sorted:
    if len(messages) != len(results):
        raise ValueError(f"{len(results)} results for {len(messages)} messages")
    out = Sorted([], [], [])
    for message, result in zip(messages, results, strict=True):
        {Outcome.DONE: out.done, Outcome.RETRY: out.retry, Outcome.POISON: out.poison}[result.outcome].append(
            message
        )
    return out


def chunks(items: Sequence[Message], size: int = MAX_BATCH) -> list[list[Message]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# -- helpers for owners ----------------------------------------------------------------------


def per_message(handle: MessageHandler, concurrency: int, log: logging.Logger | None = None) -> BatchHandler:
    """A batch handler running ``handle`` on each message, at most ``concurrency`` at once
    across all batches in flight; an error raised for one message answers for it alone."""
    limit = asyncio.Semaphore(concurrency)
    logger = log or logging.getLogger(__name__)

    async def one(message: Message) -> Result:
        async with limit:
            try:
                return await handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = outcome_for(exc)
                if outcome is Outcome.RETRY:
                    logger.warning("message will be retried: %s", exc, extra={"error": str(exc)})
                else:
                    logger.exception("message failed; left for the dead-letter queue")
                return Result(outcome, "error")

    async def batch(messages: list[Message]) -> list[Result]:
        return list(await asyncio.gather(*(one(m) for m in messages)))

    return batch


@dataclass(frozen=True)
class ConsumerConfig:
    name: str  # the logical queue (``events``, ``push``, ``scan``, ``scan-dlq``): logs, metrics
    queue_name: str  # the SQS queue name
    wait_seconds: int = 20  # long poll
    batch_size: int = MAX_BATCH
    batches_in_flight: int = 3
    stop_timeout: float = 25.0
    visibility_timeout: int | None = None  # None: the queue's own, read once
    max_extend_seconds: float = 900.0  # the heartbeat extends a batch's visibility this long at most
    hold_max_delay: float = 10.0
    probe_timeout: float = 5.0


@dataclass
class ConsumerStats:
    receives: int = 0
    receive_failures: int = 0
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    retried: int = 0
    poisoned: int = 0
    holds: int = 0
    released: int = 0  # retried messages made visible again when a hold ended
    probes_failed: int = 0
    extended: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class QueueConsumer:
    """Background loop over one SQS queue; see the module docstring."""

    def __init__(
        self,
        sqs: Any,
        config: ConsumerConfig,
        handler: BatchHandler,
        *,
        probe: Probe | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if not 1 <= config.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        if config.batches_in_flight < 1:
            raise ValueError("batches_in_flight must be at least 1")
        self.sqs = sqs
        self.config = config
        self._handler = handler
        self._probe = probe
        self._log = log or logging.getLogger(__name__)
        self.stats = ConsumerStats()
        self.error: BaseException | None = None
        self._url: str | None = None
        self._visibility = config.visibility_timeout
        self._slots = asyncio.Semaphore(config.batches_in_flight)
        self._batches: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._held = False
        self._hold_streak = 0  # holds since the last batch that got work done
        self._retried: list[Message] = []  # answered retry since the hold began

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def held(self) -> bool:
        return self._held

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} consumer already started")
        self._stopping.clear()
        self.error = None
        self._task = asyncio.create_task(self._run(), name=f"queue-consumer-{self.name}")
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.error = task.exception()
            self._log.error("%s consumer crashed", self.name, exc_info=self.error)

    async def stop(self) -> None:
        """No new receives; the receive in flight and the batches in hand finish within
        ``stop_timeout``, then the rest is cancelled. Never raises the task's own error."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.config.stop_timeout)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            pass  # kept in self.error by _on_done

    async def _run(self) -> None:
        try:
            await self._receive_loop()
            if self._batches:
                await asyncio.gather(*list(self._batches), return_exceptions=True)
        except asyncio.CancelledError:  # stop() past its deadline: the batches go with it
            for batch in list(self._batches):
                batch.cancel()
            await asyncio.gather(*list(self._batches), return_exceptions=True)
            raise

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when asked to stop."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- receiving -----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._held:
                await self._hold()
                continue
            if not await self._take_slot():
                break
            try:
                url = await self._resolve()
                messages = await self._receive(url)
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                failures += 1
                self.stats.receive_failures += 1
                delay = backoff(failures)
                self._log.warning(
                    "%s queue unavailable (retrying in %.1fs): %s",
                    self.name,
                    delay,
                    exc,
                    extra={"queue": self.name, "error": str(exc)},
                )
                await self._sleep(delay)
                continue
            failures = 0
            if not messages:
                self._slots.release()
                continue
            task = asyncio.create_task(self._batch(url, messages), name=f"{self.name}-batch")
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    async def _take_slot(self) -> bool:
        """A batch slot, or ``False`` when asked to stop while every slot is busy."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        acquire = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if acquire.done() and not acquire.cancelled():
            if self._stopping.is_set():
                self._slots.release()
                return False
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        if acquire.done() and not acquire.cancelled():  # acquired while being cancelled
            self._slots.release()
        return False

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _resolve(self) -> str:
        if self._url is None:
            self._url = (await self.sqs.get_queue_url(QueueName=self.config.queue_name))["QueueUrl"]
        if self._visibility is None:
            attrs = await self.sqs.get_queue_attributes(
                QueueUrl=self._url, AttributeNames=["VisibilityTimeout"]
            )
            self._visibility = int(attrs["Attributes"]["VisibilityTimeout"])
        return self._url

    async def _receive(self, url: str) -> list[Message]:
        reply = await self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.config.batch_size,
            WaitTimeSeconds=self.config.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        self.stats.receives += 1
        return list(reply.get("Messages", []))

    # -- holding -------------------------------------------------------------------------

    async def _hold(self) -> None:
        """Take nothing until the probe answers (with a growing delay between probes)."""
        self.stats.holds += 1
        attempt = self._hold_streak
        failed = 0
        while not self._stopping.is_set():
            await self._sleep(hold_delay(attempt, maximum=self.config.hold_max_delay))
            if self._stopping.is_set():
                return
            try:
                if self._probe is not None:
                    await asyncio.wait_for(self._probe(), self.config.probe_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.probes_failed += 1
                failed += 1
                self._log.warning(
                    "%s: holding queued messages, a dependency is still down (%s)",
                    self.name,
                    exc,
                    extra={"queue": self.name, "error": str(exc)},
                )
                attempt += 1
                continue
            break
        self._hold_streak += 1
        self._held = False
        retried, self._retried = self._retried, []
        if failed:
            self._log.info("%s: dependencies answer; receiving again", self.name, extra={"queue": self.name})
        if release_after_hold(failed) and retried and self._url is not None:
            await self._release(self._url, retried)

    # -- one batch -----------------------------------------------------------------------

    async def _batch(self, url: str, messages: list[Message]) -> None:
        self.stats.batches += 1
        self.stats.messages += len(messages)
        heartbeat = asyncio.create_task(self._heartbeat(url, messages), name=f"{self.name}-heartbeat")
        try:
            try:
                results = list(await self._handler(messages))
                sort_results(messages, results)  # the right number of answers
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = outcome_for(exc)
                self._log.log(
                    logging.WARNING if outcome is Outcome.RETRY else logging.ERROR,
                    "%s: batch handler raised; %d message(s) answered %s",
                    self.name,
                    len(messages),
                    outcome.value,
                    exc_info=exc,
                    extra={"queue": self.name},
                )
                results = [Result(outcome, "error")] * len(messages)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        try:
            await self._settle(url, messages, results)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not deleted: they come back after their visibility timeout
            self._log.warning(
                "%s: batch not acknowledged: %s",
                self.name,
                exc,
                extra={"queue": self.name, "error": str(exc)},
            )

    async def _heartbeat(self, url: str, messages: list[Message]) -> None:
        visibility = self._visibility or 0
        if visibility <= 0:
            return
        interval = heartbeat_interval(visibility)
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - started + visibility > self.config.max_extend_seconds:
                return  # a hung handler: let its messages come back
            for chunk in chunks(messages):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": visibility}
                    for i, m in enumerate(chunk)
                ]
                try:
                    await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
                    self.stats.extended += len(entries)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._log.warning(
                        "%s: could not extend visibility: %s", self.name, exc, extra={"queue": self.name}
                    )

    async def _settle(self, url: str, messages: list[Message], results: list[Result]) -> None:
        sorted_ = sort_results(messages, results)
        for result in results:
            label = result.metric_label
            SQS_MESSAGES.labels(self.name, label).inc()
            self.stats.outcomes[label] = self.stats.outcomes.get(label, 0) + 1
        if sorted_.holds:
            self._retried.extend(sorted_.retry)
            self._held = True
        elif sorted_.done:
            self._hold_streak = 0
        self.stats.poisoned += len(sorted_.poison)
        self.stats.retried += len(sorted_.retry)
        for chunk in chunks(sorted_.done):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            reply = await self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            self.stats.deleted += len(reply.get("Successful", []))
            for failure in reply.get("Failed", []):
                self._log.warning("%s: delete failed: %s", self.name, failure, extra={"queue": self.name})

    async def _release(self, url: str, messages: list[Message]) -> None:
        """Visible again now: the outage they waited out is over. A message whose visibility
        timeout already ran out is visible anyway (SQS answers that entry with an error)."""
        for chunk in chunks(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ]
            try:
                reply = await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning(
                    "%s: could not release retried messages: %s", self.name, exc, extra={"queue": self.name}
                )
                continue
            self.stats.released += len(reply.get("Successful", []))


class QueueComponent:
    """An app component that is one :class:`QueueConsumer` (events, push, email events): it
    starts and stops the consumer, and its ``stop`` raises when the loop had crashed, so the
    owner's shutdown surfaces the crash. Subclasses build ``self._consumer``."""

    name = "queue-consumer"
    _consumer: QueueConsumer

    @property
    def error(self) -> BaseException | None:
        """Why the consumer's task ended, if it crashed."""
        return self._consumer.error

    @property
    def stats(self) -> ConsumerStats:
        return self._consumer.stats

    @property
    def held(self) -> bool:
        return self._consumer.held

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        """Finish the poll in flight and the messages in hand (up to the consumer's
        ``stop_timeout``: the poll is not cancelled, or SQS would hand its messages to an
        abandoned request); raises if the loop had crashed."""
        await self._consumer.stop()
        if self._consumer.error is not None:
            raise RuntimeError(f"{self.name} had crashed") from self._consumer.error
