"""The one SQS consumer (core.queue_consumer): its decisions as pure functions, the one
retry question (``Transient``), the one SNS-envelope parser, and its queue handling against
the moto SQS server — heartbeat, hold, poison, graceful stop."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aioboto3
import asyncpg
import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.db import DatabaseUnavailable
from core.envelope import event_from_body, unwrap_sns
from core.errors import AwsUnavailable, RedisUnavailable, Transient, as_transient
from core.events import Event, EventType, InvalidEvent
from core.queue_consumer import (
    ConsumerConfig,
    Message,
    Outcome,
    QueueConsumer,
    Result,
    backoff,
    heartbeat_interval,
    hold_delay,
    outcome_for,
    per_message,
    receive_count,
    release_after_hold,
    sort_results,
)
from core.status import UploadStatus
from processors.common.store import StepInProgress
from processors.scan.clamd import ClamdError, ClamdUnavailable
from server.realtime.broker import BrokerUnavailable
from subscribers.push.notifier import RetryLater
from tests.conftest import Stack

# -- the retry question ------------------------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Op")


@pytest.mark.parametrize(
    "exc",
    [
        DatabaseUnavailable("down"),
        BrokerUnavailable("down"),
        ClamdUnavailable("down"),
        ClamdError("clamd: out of memory"),
        StepInProgress("scan of x is already running"),
        RetryLater("1 push to retry"),
    ],
)
def test_every_retryable_error_is_a_transient(exc: Exception) -> None:
    assert isinstance(exc, Transient)
    assert outcome_for(exc) is Outcome.RETRY


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), DatabaseUnavailable),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), DatabaseUnavailable),
        (asyncpg.exceptions.AdminShutdownError("terminating"), DatabaseUnavailable),
        (asyncpg.exceptions.SerializationError("could not serialize"), DatabaseUnavailable),
        (RedisConnectionError("refused"), RedisUnavailable),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), AwsUnavailable),
        (_client_error("SlowDown", 503), AwsUnavailable),
        (_client_error("ThrottlingException", 400), AwsUnavailable),
        (ConnectionRefusedError(111, "refused"), Transient),
        (TimeoutError("timed out"), Transient),
    ],
)
def test_connection_errors_are_translated_at_the_edge(exc: Exception, kind: type[Transient]) -> None:
    translated = as_transient(exc)
    assert isinstance(translated, kind)
    assert translated.__cause__ is exc
    assert outcome_for(exc) is Outcome.RETRY


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        InvalidEvent("body: not JSON"),
        asyncpg.exceptions.UniqueViolationError("duplicate"),
        asyncpg.exceptions.UndefinedColumnError("no such column"),
        ResponseError("WRONGTYPE"),
        _client_error("AccessDenied", 403),
        _client_error("NoSuchKey", 404),
        KeyError("x"),
    ],
)
def test_everything_else_is_poison(exc: Exception) -> None:
    assert as_transient(exc) is exc
    assert outcome_for(exc) is Outcome.POISON


# -- pure decisions ----------------------------------------------------------------------


def test_retried_messages_are_released_only_when_the_probe_saw_the_outage() -> None:
    assert release_after_hold(1) and release_after_hold(7)
    assert not release_after_hold(0)  # it answered at once: back after their visibility timeout


def test_hold_probes_at_once_then_with_a_growing_capped_delay() -> None:
    assert [hold_delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert hold_delay(40, maximum=3.0) == 3.0


def test_sqs_backoff_doubles_to_its_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_heartbeat_at_half_the_visibility_timeout() -> None:
    assert heartbeat_interval(60) == 30
    assert heartbeat_interval(1) == 0.5
    assert heartbeat_interval(0) == 0.5


def test_receive_count_of_odd_attributes() -> None:
    assert receive_count({"Attributes": {"ApproximateReceiveCount": "3"}}) == 3
    assert receive_count({}) == 1
    assert receive_count({"Attributes": {"ApproximateReceiveCount": "x"}}) == 1


def test_results_sort_into_delete_retry_and_poison() -> None:
    messages: list[Message] = [{"MessageId": str(i)} for i in range(4)]
    sorted_ = sort_results(
        messages,
        [
            Result(Outcome.DONE),
            Result(Outcome.POISON, "invalid"),
            Result(Outcome.RETRY),
            Result(Outcome.DONE),
        ],
    )
    assert [m["MessageId"] for m in sorted_.done] == ["0", "3"]
    assert [m["MessageId"] for m in sorted_.poison] == ["1"]
    assert [m["MessageId"] for m in sorted_.retry] == ["2"]
    assert sorted_.holds
    assert not sort_results(messages[:1], [Result(Outcome.POISON)]).holds  # poison never holds
    with pytest.raises(ValueError):
        sort_results(messages, [Result(Outcome.DONE)])
    assert (
        Result(Outcome.DONE).metric_label == "done"
        and Result(Outcome.DONE, "applied").metric_label == "applied"
    )


async def test_per_message_answers_each_error_by_its_kind() -> None:
    async def handle(message: Message) -> Result:
        body = message["Body"]
        if body == "down":
            raise DatabaseUnavailable("connection refused")
        if body == "bug":
            raise ZeroDivisionError
        return Result(Outcome.DONE)

    results = await per_message(handle, 2)([{"Body": b} for b in ("ok", "down", "bug")])
    assert [r.outcome for r in results] == [Outcome.DONE, Outcome.RETRY, Outcome.POISON]


def test_one_sns_envelope_parser() -> None:
    event = Event.new(
        EventType.UPLOAD_COMPLETED,
        tenant_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        upload_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        status=UploadStatus.UPLOADED,
    )
    raw = event.to_json().decode()
    envelope = orjson.dumps({"Type": "Notification", "MessageId": "m", "Message": raw}).decode()
    assert unwrap_sns(raw) == raw and unwrap_sns(envelope) == raw
    assert event_from_body(raw) == event_from_body(envelope) == event
    assert unwrap_sns("not json") == "not json"
    assert unwrap_sns('{"Type":"Notification","Message":42}') == '{"Type":"Notification","Message":42}'
    with pytest.raises(InvalidEvent):
        event_from_body('{"Type":"Notification","Message":"{}"}')


# -- against SQS (moto over HTTP) ----------------------------------------------------------


@pytest.fixture
async def sqs(stack: Stack) -> AsyncIterator[Any]:
    kwargs = {
        "region_name": stack.settings.aws_region,
        "endpoint_url": stack.settings.aws_endpoint_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    async with aioboto3.Session().client("sqs", **kwargs) as client:
        yield client


async def _queue(sqs: Any, *, visibility: int, max_receives: int | None = None) -> tuple[str, str, str]:
    name = f"qc-{uuid.uuid4().hex[:8]}"
    attributes = {"VisibilityTimeout": str(visibility)}
    dlq_url = ""
    if max_receives is not None:
        dlq_url = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
        dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        attributes["RedrivePolicy"] = orjson.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}
        ).decode()
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    return name, url, dlq_url


async def _count(sqs: Any, url: str) -> int:
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    return sum(int(v) for v in attrs["Attributes"].values())


async def _until(check: Callable[[], Any], what: str, tries: int = 300) -> None:
    for _ in range(tries):
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: never happened")


async def test_long_work_keeps_its_message_invisible_and_is_deleted_once(sqs: Any) -> None:
    name, url, _ = await _queue(sqs, visibility=1)
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(message: Message) -> Result:
        seen.append(message["MessageId"])
        await release.wait()
        return Result(Outcome.DONE)

    consumer = QueueConsumer(
        sqs, ConsumerConfig(name="t", queue_name=name, wait_seconds=1), per_message(handle, 4)
    )
    await sqs.send_message(QueueUrl=url, MessageBody="slow")
    await consumer.start()
    try:
        await _until(lambda: bool(seen), "handler started")
        # Several visibility timeouts pass while the work goes on: nobody else gets it.
        for _ in range(4):
            got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
            assert got.get("Messages", []) == []
        release.set()
        await _until(lambda: consumer.stats.deleted == 1, "deleted")
    finally:
        await consumer.stop()
    assert len(seen) == 1 and consumer.stats.extended >= 1
    assert await _count(sqs, url) == 0


async def test_a_retry_holds_receiving_until_the_probe_answers(sqs: Any) -> None:
    name, url, _ = await _queue(sqs, visibility=30)
    dependency_up = False
    attempts: list[int] = []
    probes = 0

    async def handle(message: Message) -> Result:
        attempts.append(receive_count(message))
        return Result(Outcome.DONE if dependency_up else Outcome.RETRY)

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if not dependency_up:
            raise DatabaseUnavailable("still down")

    consumer = QueueConsumer(
        sqs,
        ConsumerConfig(name="t", queue_name=name, wait_seconds=1, hold_max_delay=0.5),
        per_message(handle, 4),
        probe=probe,
    )
    await sqs.send_message(QueueUrl=url, MessageBody="needs the database")
    await consumer.start()
    try:
        await _until(lambda: probes >= 3, "probing while held")
        assert consumer.held
        receives = consumer.stats.receives
        await _until(lambda: probes >= 6, "still probing")
        assert consumer.stats.receives == receives  # held: nothing received meanwhile
        assert attempts == [1]
        dependency_up = True
        await _until(lambda: consumer.stats.deleted == 1, "applied after the outage")
    finally:
        await consumer.stop()
    assert attempts == [1, 2]  # one receive during the outage, one after it
    assert consumer.stats.retried == 1 and consumer.stats.released == 1 and not consumer.held


async def test_a_retry_the_probe_does_not_explain_waits_out_the_visibility_timeout(sqs: Any) -> None:
    name, url, _ = await _queue(sqs, visibility=2)
    attempts: list[int] = []
    probes = 0

    async def handle(message: Message) -> Result:
        attempts.append(receive_count(message))
        return Result(Outcome.RETRY if len(attempts) == 1 else Outcome.DONE)

    async def probe() -> None:  # the database is fine: what failed was something else
        nonlocal probes
        probes += 1

    consumer = QueueConsumer(
        sqs, ConsumerConfig(name="t", queue_name=name, wait_seconds=1), per_message(handle, 4), probe=probe
    )
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    await consumer.start()
    try:
        await _until(lambda: consumer.stats.deleted == 1, "handled on its second receive")
    finally:
        await consumer.stop()
    assert attempts == [1, 2] and probes == 1
    assert consumer.stats.released == 0  # left to come back on its own, as Lambda would


async def test_poison_is_left_for_the_dead_letter_queue_without_holding(sqs: Any) -> None:
    name, url, dlq_url = await _queue(sqs, visibility=1, max_receives=2)
    probes = 0

    async def handle(message: Message) -> Result:
        return Result(Outcome.POISON, "invalid") if message["Body"] == "bad" else Result(Outcome.DONE)

    async def probe() -> None:
        nonlocal probes
        probes += 1

    consumer = QueueConsumer(
        sqs, ConsumerConfig(name="t", queue_name=name, wait_seconds=1), per_message(handle, 4), probe=probe
    )
    await sqs.send_message(QueueUrl=url, MessageBody="bad")
    await sqs.send_message(QueueUrl=url, MessageBody="good")
    await consumer.start()
    try:
        await _until(lambda: _count(sqs, dlq_url), "dead-lettered")
    finally:
        await consumer.stop()
    assert consumer.stats.deleted == 1 and consumer.stats.poisoned == 2
    assert probes == 0 and consumer.stats.holds == 0
    assert await _count(sqs, url) == 0


async def test_stop_lets_the_batch_in_hand_finish(sqs: Any) -> None:
    name, url, _ = await _queue(sqs, visibility=30)
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(message: Message) -> Result:
        started.set()
        await release.wait()
        return Result(Outcome.DONE)

    consumer = QueueConsumer(
        sqs,
        ConsumerConfig(name="t", queue_name=name, wait_seconds=1, stop_timeout=30),
        per_message(handle, 1),
    )
    await sqs.send_message(QueueUrl=url, MessageBody="x")
    await consumer.start()
    await asyncio.wait_for(started.wait(), 30)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert consumer.stats.deleted == 1 and consumer.error is None
    assert await _count(sqs, url) == 0


async def test_sqs_failures_back_off_and_the_loop_carries_on(sqs: Any) -> None:
    async def handle(message: Message) -> Result:
        return Result(Outcome.DONE)

    name = f"qc-late-{uuid.uuid4().hex[:6]}"
    consumer = QueueConsumer(
        sqs, ConsumerConfig(name="t", queue_name=name, wait_seconds=1), per_message(handle, 1)
    )
    await consumer.start()
    try:
        await _until(lambda: consumer.stats.receive_failures >= 1, "the missing queue noticed")
        await sqs.create_queue(QueueName=name)
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.send_message(QueueUrl=url, MessageBody="x")
        await _until(lambda: consumer.stats.deleted == 1, "consumed once the queue exists")
    finally:
        await consumer.stop()
    assert consumer.error is None and consumer.task is None


async def test_receives_overlap_the_work_up_to_the_batches_in_flight(sqs: Any) -> None:
    name, url, _ = await _queue(sqs, visibility=30)
    release = asyncio.Event()
    active: list[str] = []

    async def handle(message: Message) -> Result:
        active.append(message["Body"])
        await release.wait()
        return Result(Outcome.DONE)

    consumer = QueueConsumer(
        sqs,
        ConsumerConfig(name="t", queue_name=name, wait_seconds=1, batch_size=1, batches_in_flight=2),
        per_message(handle, 10),
    )
    for body in ("a", "b", "c"):
        await sqs.send_message(QueueUrl=url, MessageBody=body)
    await consumer.start()
    try:
        # The second batch was received while the first was still being worked on ...
        await _until(lambda: len(active) == 2, "two batches in flight at once")
        # ... and no third: its slot is taken before receiving, so it stays in the queue.
        receives = consumer.stats.receives
        for _ in range(3):
            got = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            assert got["Attributes"]["ApproximateNumberOfMessages"] == "1"
            await asyncio.sleep(0.5)
        assert len(active) == 2 and consumer.stats.receives == receives
        release.set()
        await _until(lambda: consumer.stats.deleted == 3, "all three handled")
    finally:
        await consumer.stop()
    assert sorted(active) == ["a", "b", "c"]
