"""The event path, measured: the ``events`` consumer (``server.realtime.consumer.EventConsumer``
on ``core.queue_consumer.QueueConsumer``) applying upload events in one process — dedupe and
the forward-only status change in PostgreSQL, the status cache written through in Redis, the
publication to the upload's four channels (project, upload, user, tenant) through the Redis
broker of the real-time node — with the queue leg behind the consumer's receive interface
(the SQS calls the queue consumer makes) fed from memory, then the same through moto's SQS
(``moto_server`` in its own process) beside it.

    .venv/bin/python bench/events.py [--events 5000] [--sqs-events 1000] [--write]

Figures per leg: events/s of the consumer process (first receive to last event applied),
its CPU per event and PostgreSQL's and Redis's (their processes, from /proc), the load
average before and after, and the cost per event counted in this process: PostgreSQL round trips
(every statement asyncpg sends, BEGIN and COMMIT included) and Redis round trips (every
command or pipeline redis-py writes, cache and broker). Each event moves one upload
``uploading → uploaded``; the uploads are checked in PostgreSQL afterwards.
``--write`` replaces the ``## Event path`` section of bench/RESULTS.md.
"""

# ruff: noqa: E501  (Markdown table templates)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402

HEADING = "## Event path"


# --- round-trip counters (this process's asyncpg and redis-py connections) ---


@dataclass
class RoundTrips:
    postgres: int = 0
    redis: int = 0


COUNTS = RoundTrips()


def count_round_trips() -> None:
    """Count at the client libraries' send points: asyncpg's ``Connection.execute`` without
    arguments (simple query: BEGIN, COMMIT, pool reset) and ``Connection._execute`` (every
    fetch*/execute with arguments); redis-py's ``send_packed_command`` (one write per command
    or pipeline, each followed by reading its replies)."""
    import asyncpg.connection
    from redis.asyncio.connection import AbstractConnection

    execute = asyncpg.connection.Connection.execute
    _execute = asyncpg.connection.Connection._execute
    send = AbstractConnection.send_packed_command

    async def counted_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:
            COUNTS.postgres += 1
        return await execute(self, query, *args, **kwargs)

    async def counted__execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS.postgres += 1
        return await _execute(self, *args, **kwargs)

    async def counted_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS.redis += 1
        return await send(self, *args, **kwargs)

    asyncpg.connection.Connection.execute = counted_execute
    asyncpg.connection.Connection._execute = counted__execute
    AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]


# --- CPU of the services (PostgreSQL, Redis: child processes of this one) ---


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command, CPU seconds incl. reaped children) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[1]), comm, ticks / os.sysconf("SC_CLK_TCK")


def service_cpu() -> dict[str, float]:
    """CPU seconds so far of each service this process started (a child process and all its
    descendants, e.g. PostgreSQL's backends), by the child's command name."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals: dict[str, float] = {}
    for child in children.get(os.getpid(), []):
        todo, seconds = [child], 0.0
        while todo:
            pid = todo.pop()
            seconds += stats[pid][2]
            todo.extend(children.get(pid, []))
        name = stats[child][1]
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


# --- the queue leg from memory ---


class MemoryQueue:
    """The receive interface of :class:`core.queue_consumer.QueueConsumer` (the SQS calls it
    makes) over messages held in memory: receives hand out up to ten, deletes are counted,
    a visibility change puts the message back."""

    def __init__(self, bodies: list[str]) -> None:
        self._ready: deque[dict[str, Any]] = deque(
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": str(i),
                "Body": body,
                "Attributes": {"ApproximateReceiveCount": "1"},
                "MessageAttributes": {},
            }
            for i, body in enumerate(bodies)
        )
        self._out: dict[str, dict[str, Any]] = {}
        self.deleted = 0
        self.first_receive: float | None = None

    async def get_queue_url(self, QueueName: str) -> dict[str, Any]:
        return {"QueueUrl": f"memory://{QueueName}"}

    async def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"VisibilityTimeout": "60"}}

    async def receive_message(
        self, QueueUrl: str, MaxNumberOfMessages: int, WaitTimeSeconds: int, **_: Any
    ) -> dict[str, Any]:
        if not self._ready:
            await asyncio.sleep(min(WaitTimeSeconds, 0.05))
            return {"Messages": []}
        if self.first_receive is None:
            self.first_receive = time.perf_counter()
        batch = [self._ready.popleft() for _ in range(min(MaxNumberOfMessages, len(self._ready)))]
        for message in batch:
            self._out[message["ReceiptHandle"]] = message
        await asyncio.sleep(0)  # a receive yields to the loop, as a network call would
        return {"Messages": batch}

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        for entry in Entries:
            if self._out.pop(entry["ReceiptHandle"], None) is not None:
                self.deleted += 1
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    async def change_message_visibility_batch(
        self, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        for entry in Entries:
            message = self._out.get(entry["ReceiptHandle"])
            if message is not None and int(entry.get("VisibilityTimeout", 1)) == 0:
                self._ready.append(self._out.pop(entry["ReceiptHandle"]))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


# --- one leg ---


@dataclass
class Leg:
    name: str
    events: int
    seconds: float
    cpu_seconds: float
    postgres: int
    redis: int
    applied: int
    postgres_cpu: float = 0.0  # seconds, the PostgreSQL server's processes
    redis_cpu: float = 0.0  # seconds, the Redis server
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after the leg

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def event_bodies(fixture: Any, uploads: list[tuple[uuid.UUID, uuid.UUID]]) -> list[str]:
    from core.events import Event, EventType
    from core.status import UploadStatus

    return [
        Event.new(
            EventType.UPLOAD_COMPLETED,
            tenant_id=fixture.tenant_id,
            project_id=project_id,
            upload_id=upload_id,
            user_id=fixture.user_id,
            status=UploadStatus.UPLOADED,
        )
        .to_json()
        .decode()
        for upload_id, project_id in uploads
    ]


async def run_leg(
    name: str, app: Any, sqs: Any, queue_name: str, fixture: Any, uploads: list[Any], limit_s: float
) -> Leg:
    from core.db import tenant_transaction
    from server.realtime.consumer import EventConsumer
    from server.uploads.event_applier import EventApplier

    state = app.state
    settings = state.settings
    consumer = EventConsumer(
        sqs=sqs,
        queue_name=queue_name,
        applier=EventApplier(state.pool, state.status_cache, state.publisher),
        wait_seconds=1,
        concurrency=settings.events_concurrency,
        stop_timeout=5,
    )
    total = len(uploads)
    before = RoundTrips(COUNTS.postgres, COUNTS.redis)
    services = service_cpu()
    load_before = os.getloadavg()[0]
    cpu = time.process_time()
    started = time.perf_counter()
    await consumer.start()
    deadline = time.monotonic() + limit_s
    while consumer.handled < total and time.monotonic() < deadline:  # noqa: ASYNC110 (a counter, no event)
        await asyncio.sleep(0.005)
    finished = time.perf_counter()
    cpu = time.process_time() - cpu
    services = {name: seconds - services.get(name, 0.0) for name, seconds in service_cpu().items()}
    used = RoundTrips(COUNTS.postgres - before.postgres, COUNTS.redis - before.redis)
    await consumer.stop()
    if isinstance(sqs, MemoryQueue) and sqs.first_receive is not None:
        started = sqs.first_receive
    ids = [u for u, _ in uploads]
    async with tenant_transaction(state.pool, fixture.tenant_id, readonly=True) as conn:
        applied = int(
            await conn.fetchval(
                "SELECT count(*) FROM uploads WHERE upload_id = ANY($1::uuid[]) AND status = 'uploaded'", ids
            )
        )
    print(
        f"  {name}: {consumer.handled}/{total} handled in {finished - started:.2f} s, applied {applied}; "
        f"{used.postgres / total:.1f} PostgreSQL and {used.redis / total:.1f} Redis round trips per event; "
        f"CPU per event: consumer {cpu / total * 1e6:,.0f} µs, "
        + ", ".join(f"{n} {s / total * 1e6:,.0f} µs" for n, s in sorted(services.items())),
        flush=True,
    )
    return Leg(
        name,
        consumer.handled,
        finished - started,
        cpu,
        used.postgres,
        used.redis,
        applied,
        services.get("postgres", 0.0),
        services.get("redis-server", 0.0),
        (load_before, os.getloadavg()[0]),
    )


async def run(settings: Any, events_queue_url: str, args: argparse.Namespace) -> list[Leg]:
    import boto3

    from bench.soak import prepare
    from core import resources
    from server.app import create_app

    fixture = await prepare(settings, args.projects, args.events + args.sqs_events + 200)
    warm, memory_uploads = fixture.uploads[:200], fixture.uploads[200 : 200 + args.events]
    sqs_uploads = fixture.uploads[200 + args.events :]
    served = settings.replace(
        events_consumer_enabled=False,
        push_consumer_enabled=False,
        digest_scheduler_enabled=False,
        log_level="WARNING",
    )
    app = create_app(served)
    queue_name = resources.queue_name(settings.stack, "events")
    legs = []
    async with app.router.lifespan_context(app):
        await run_leg(
            "warm-up", app, MemoryQueue(event_bodies(fixture, warm)), queue_name, fixture, warm, 120
        )
        legs.append(
            await run_leg(
                "memory",
                app,
                MemoryQueue(event_bodies(fixture, memory_uploads)),
                queue_name,
                fixture,
                memory_uploads,
                600,
            )
        )
        if sqs_uploads:
            sender = boto3.client(
                "sqs",
                region_name=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            bodies = event_bodies(fixture, sqs_uploads)
            for i in range(0, len(bodies), 10):
                sender.send_message_batch(
                    QueueUrl=events_queue_url,
                    Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[i : i + 10])],
                )
            legs.append(await run_leg("sqs", app, app.state.sqs, queue_name, fixture, sqs_uploads, 600))
    return legs


# What each step took off the event path (commits on main), measured back to back with this
# script on each commit's tree: `--events 3000 --sqs-events 0`, queue leg from memory.
STEPS = """
What each step took off the path (issue #16; commits on main), measured back to back with this script on each
commit's tree, `--events 3000 --sqs-events 0`, queue leg from memory, two rounds (round 1 / round 2; the 1-minute
load average at the start of each run in brackets). Round trips are exact; the rates and CPU figures move with the
other work on the machine (the same tree gave 384 and 688 events/s a few minutes apart), CPU per event less so.

| step | commit | PostgreSQL / Redis round trips per event | consumer CPU / event | PostgreSQL CPU / event | events/s |
|---|---|---|---|---|---|
| before: 4 script calls for the four channels, 8 statements per transaction | adf3311 | 8.0 / 5.0 | 1,233 / 1,680 µs | 470 / 730 µs | 688 [3.2] / 384 [2.6] |
| the four channels in one script call (`Broker.publish_many`; one per slot on a Cluster) | d1f4e92 | 8.0 / 2.0 | 1,097 / 1,081 µs | 623 / 630 µs | 615 [3.0] / 289 [2.7] |
| dedupe + row lock in one statement, no no-op `UPDATE`, derivatives read only for a `ready` row | 413939c | 6.0 / 2.0 | 880 / 950 µs | 507 / 520 µs | 870 [2.8] / 472 [5.3] |
| `core.db.plain_tenant_transaction`: `BEGIN` + tenant setting in one query, no reset query on release | dff3d22 | 4.0 / 2.0 | 679 / 882 µs | 370 / 470 µs | 1,071 [2.5] / 1,000 [4.9] |
| dedupe + the guarded `UPDATE` (`core.transition.guarded_update`) in one statement | f3345f3 | 3.0 / 2.0 | 967 / 690 µs | 513 / 350 µs | 589 [2.1] / 971 [3.8] |

Where a moving event's CPU goes now (py-spy over this script): in the consumer, the two Redis script calls through
redis-py are about a third (the publication about 23 %, the cache write about 12 %: connection pool, command
packing, reply parsing), asyncpg's three statements and the event loop's socket writes and reads most of the rest,
parsing, documents and JSON a few per cent. On two shared cores the whole path (consumer + PostgreSQL + Redis,
about 1.3–1.7 ms of CPU per event) is what bounds the rate; the rate swings with what else the machine runs.
"""


def _us(seconds: float, events: int) -> str:
    return f"{seconds / events * 1e6:,.0f} µs"


def render(legs: list[Leg], command: str, args: argparse.Namespace) -> str:
    rows = "\n".join(
        f"| {'queue leg from memory (`MemoryQueue`, the consumer’s receive interface)' if leg.name == 'memory' else 'through moto’s SQS (`moto_server`, own process)'} "
        f"| {leg.events:,} | {leg.applied:,} | **{leg.rate:,.0f}** | {_us(leg.cpu_seconds, leg.events)} "
        f"| {_us(leg.postgres_cpu, leg.events)} | {_us(leg.redis_cpu, leg.events)} "
        f"| {leg.postgres / leg.events:.1f} | {leg.redis / leg.events:.1f} | {leg.load[0]:.1f} → {leg.load[1]:.1f} |"
        for leg in legs
    )
    memory = legs[0]
    verdict = "reached" if memory.rate >= 1000 else "not reached in this run"
    return f"""{HEADING}

Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs shared by the consumer process, PostgreSQL, Redis,
moto and other work on the machine — the load average is beside each row; Python {platform.python_version()}).

One process runs the app's lifespan (PostgreSQL pool, Redis client, status cache, the real-time node and its Redis
broker) and an `EventConsumer` (`core.queue_consumer.QueueConsumer`, `BUILDPEER_EVENTS_CONCURRENCY`
= {args.concurrency} events at once, batches of ten, three batches in flight) with a real `EventApplier`. Per event: one
tenant transaction (`core.db.plain_tenant_transaction`: `BEGIN` and the tenant setting in one simple query; one
statement for the dedupe record in `processed_events` and the guarded `UPDATE` of `core.transition`, which locks
the row; `COMMIT`; no asyncpg reset query on release), the document written through to the status cache (one
script call), and the publication to the upload's four channels (`project:`, `upload:`, `user:`, `tenant:`) in one
script call (`Broker.publish_many`; on a Redis Cluster one call per slot). Each event moves one upload
`uploading → uploaded` (`upload.completed`); {args.projects} projects. Round trips are counted in the consumer
process at the client libraries (asyncpg statements incl. BEGIN/COMMIT and the pool's reset; redis-py command or
pipeline writes, cache and broker); CPU per event is the consumer process's, and PostgreSQL's (postmaster and
backends) and Redis's from /proc over the same interval.

| leg | events | applied (checked in PostgreSQL) | events/s | consumer CPU / event | PostgreSQL CPU / event | Redis CPU / event | PostgreSQL round trips / event | Redis round trips / event | load (1 min) |
|---|---|---|---|---|---|---|---|---|---|
{rows}

**{memory.rate:,.0f} events/s per consumer process** with the queue leg from memory: target ≥ 1,000 {verdict}. The SQS row
adds moto's `ReceiveMessage` / `DeleteMessageBatch` over HTTP (moto is a single Python process whose receive
cost grows with queue depth; real SQS is a network round trip per batch of ten).
{STEPS}"""


@contextlib.contextmanager
def stack(args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    from bench.soak import moto_process
    from devstack.aws import provision
    from devstack.ephemeral import ephemeral_services

    with tempfile.TemporaryDirectory(prefix="bp-events-") as tmp:
        os.chmod(tmp, 0o755)
        with (
            ephemeral_services(
                Path(tmp),
                jwt_secret="events-secret-0123456789abcdef-0123456789",
                stack="bpevents",
                bucket="bpevents-uploads",
                rate_limit_ip_per_minute=0,
                rate_limit_tenant_per_minute=0,
                events_concurrency=args.concurrency,
            ) as services,
            moto_process(Path(tmp)) as moto_url,
        ):
            settings = services.settings.replace(aws_endpoint_url=moto_url)
            provisioned = provision(settings)
            yield settings, provisioned.queue_urls["events"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--sqs-events", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    import uvloop

    count_round_trips()
    with stack(args) as (settings, queue_url):
        legs = uvloop.run(run(settings, queue_url, args))  # the loop `buildpeer serve` runs on
    command = ".venv/bin/python bench/events.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    section = render(legs, command.strip(), args)
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
