"""Soak: many WebSocket clients with churn while upload events stream through one server.

One ``buildpeer serve`` process (full app: hub + SQS events consumer) on throw-away
PostgreSQL, Redis and moto, all on 127.0.0.1. This process holds N protocol-level
WebSocket clients (Centrifugo v2 JSON, as the stock SDK speaks it), each subscribed to
one of P project channels with recovery on; a churn task closes a random client's
connection at a steady pace (``--churn`` of the clients per minute) and the client
reconnects after a short pause, recovering what it missed from the channel history.

Upload events (one ``upload.completed`` per upload, uploads spread evenly over the
projects) are sent into the ``events`` SQS queue — the body SNS raw delivery would put
there — at ``--rate`` per second; the server's consumer applies each one in PostgreSQL,
writes the status cache and publishes it to the upload's channels.

Figures: publications lost by connected clients (offset gaps inside a session, gaps a
recovery did not fill, and at the end the distance from each connected client to the top
of its channel; target 0), duplicates, unrecovered reconnects, delivery latency (event
sent → live publication received, p50/p99/max), and the server's RSS sampled over the run
(target: flat).

Usage: ``.venv/bin/python bench/soak.py --clients 5000 --minutes 5 --write`` (``--write``
replaces the ``## Soak`` section of bench/RESULTS.md). Stops by itself.

``--instances N`` runs N server processes (the clients spread over them, events consumed by
any); ``--redis-cluster`` puts everything Redis holds on a six-process Redis Cluster
(``devstack.redis_cluster``; Cluster clients, sharded PUB/SUB). ``--compare`` runs single
Redis vs Cluster x 1 vs 3 instances one after the other in one run and reports them side by
side (deliveries/s, p99, lost): ``--write`` then replaces ``## Soak: Redis Cluster and
instances`` (keeping its ``--kill-one`` part).

``--kill-one`` (three instances unless ``--instances`` says more) puts the instances behind a
local round-robin balancer in its own process (``bench/balancer.py``): every client connects
through it and reconnects through it. Halfway through the events the first instance is
SIGKILLed; its clients reconnect to the others and recover from history. Every publication is
accounted per client: a client is complete when it holds each offset of its channel from its
first subscribe to the channel's top exactly once (and the channels' tops add up to the events
sent: nothing applied went unpublished). ``--write`` replaces the ``### One of three instances
SIGKILLed`` part of ``## Soak: Redis Cluster and instances``. E.g. ``.venv/bin/python
bench/soak.py --kill-one --redis-cluster --clients 3000 --minutes 1 --rate 50 --write``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import pct, rss_kib  # noqa: E402
from bench.results import RESULTS, write_section  # noqa: E402

HEADING = "## Soak"
COMPARE_HEADING = "## Soak: Redis Cluster and instances"
KILL_HEADING = "### One of three instances SIGKILLed"
RECONNECT_PAUSE = (0.2, 1.5)  # a phone changing networks: publications are missed meanwhile


# --- clients ---


@dataclass
class Totals:
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    reconnects: int = 0
    recovered: int = 0
    unrecovered: int = 0
    recovered_pubs: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    last_delivery: float = 0.0  # monotonic time of the last publication delivered


class Client:
    """One connection at a time, resubscribing with recovery after every reconnect."""

    def __init__(self, url: str, token: str, channel: str, totals: Totals, sent_at: dict[str, float]) -> None:
        self.url = url
        self.token = token
        self.channel = channel
        self.totals = totals
        self.sent_at = sent_at
        self.offset: int | None = None
        self.epoch = ""
        self.ws: Any = None
        self.live = False  # connected and subscribed
        self.subscribed = asyncio.Event()
        self.stopping = False
        # exact accounting: the channel's offset at the first subscribe, the publications
        # received after it (each offset once) and repeats
        self.start: int | None = None
        self.received = 0
        self.repeats = 0
        self.dropped = 0  # sessions that ended under it (not a churn close)

    async def run(self) -> None:
        while not self.stopping:
            try:
                await self._session()
            except Exception:  # a refused or broken connection: counted, retried
                self.totals.errors += 1
                if self.live:
                    self.dropped += 1
            self.live = False
            self.ws = None
            if not self.stopping:
                await asyncio.sleep(random.uniform(*RECONNECT_PAUSE))

    async def churn(self) -> None:
        if self.ws is not None and self.live:
            self.totals.reconnects += 1
            self.live = False
            await self.ws.close()

    async def _session(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            self.url, max_queue=None, ping_interval=None, compression=None, open_timeout=120
        ) as ws:
            self.ws = ws
            subscribe: dict[str, Any] = {"channel": self.channel}
            recovering = self.offset is not None
            if recovering:
                subscribe.update(recover=True, offset=self.offset, epoch=self.epoch)
            await ws.send(
                orjson.dumps({"id": 1, "connect": {"token": self.token}}).decode()
                + "\n"
                + orjson.dumps({"id": 2, "subscribe": subscribe}).decode()
            )
            async for frame in ws:
                for line in str(frame).split("\n"):
                    message = orjson.loads(line)
                    if not message:
                        await ws.send("{}")  # pong
                    elif "push" in message:
                        pub = message["push"].get("pub")
                        if pub is not None:
                            self._publication(pub, live=True)
                    elif message.get("id") == 2:
                        if "error" in message:
                            raise RuntimeError(message["error"])
                        self._subscribed(message["subscribe"], recovering)
                    elif "error" in message:
                        raise RuntimeError(message["error"])

    def _subscribed(self, result: dict[str, Any], recovering: bool) -> None:
        top = int(result.get("offset", 0))
        if recovering and result.get("recovered"):
            self.totals.recovered += 1
            for pub in result.get("publications", []):
                self.totals.recovered_pubs += 1
                self._publication(pub, live=False)
            assert self.offset is not None
            if top > self.offset:
                self.totals.lost += top - self.offset
        elif recovering:
            self.totals.unrecovered += 1
        self.offset = max(top, self.offset or 0) if recovering and result.get("recovered") else top
        if self.start is None:
            self.start = top
        self.epoch = result.get("epoch", "")
        self.live = True
        self.subscribed.set()

    def _publication(self, pub: dict[str, Any], *, live: bool) -> None:
        offset = int(pub.get("offset", 0))
        if self.offset is not None:
            if offset <= self.offset:
                self.totals.duplicates += 1
                self.repeats += 1
                return
            if offset > self.offset + 1:
                self.totals.lost += offset - self.offset - 1
        self.offset = offset
        self.received += 1
        self.totals.delivered += 1
        self.totals.last_delivery = time.monotonic()
        if live:
            sent = self.sent_at.get(pub["data"]["id"])
            if sent is not None:
                self.totals.latencies.append(time.monotonic() - sent)


# --- the run ---


@dataclass
class Fixture:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    projects: list[uuid.UUID]
    uploads: list[tuple[uuid.UUID, uuid.UUID]]  # (upload, project)
    token: str


async def prepare(settings: Any, projects: int, uploads: int) -> Fixture:
    import asyncpg

    from core.db import create_pool
    from server import admin
    from server.auth import mint_token

    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        tenant = uuid.UUID((await admin.create_tenant(pool, "Soak"))["tenant_id"])
        user = uuid.UUID((await admin.create_user(pool, tenant, "admin@soak.example", "admin"))["user_id"])
        project_ids = [
            uuid.UUID((await admin.create_project(pool, tenant, f"Obra {i}"))["project_id"])
            for i in range(projects)
        ]
    finally:
        await pool.close()
    rows = []
    pairs = []
    for i in range(uploads):
        upload_id, project_id = uuid.uuid4(), project_ids[i % projects]
        pairs.append((upload_id, project_id))
        key = f"tenant-{tenant}/project-{project_id}/uploads/{upload_id}/original/foto.jpg"
        rows.append((tenant, upload_id, project_id, user, "foto.jpg", "image/jpeg", 1000, key, "uploading"))
    owner = await asyncpg.connect(settings.migrate_database_url)  # bulk load past row security
    try:
        await owner.copy_records_to_table(
            "uploads",
            records=rows,
            columns=[
                "tenant_id",
                "upload_id",
                "project_id",
                "uploader_id",
                "file_name",
                "declared_type",
                "size_bytes",
                "s3_key",
                "status",
            ],
        )
    finally:
        await owner.close()
    token = mint_token(settings, user_id=user, tenant_id=tenant, role="admin", ttl_seconds=86400)
    return Fixture(tenant, user, project_ids, pairs, token)


@contextlib.contextmanager
def moto_process(base: Path) -> Iterator[str]:
    """``moto_server`` in its own process on a free loopback port; its URL."""
    from devstack.process import ManagedProcess, free_port, port_open, wait_until

    port = free_port()
    proc = ManagedProcess(
        "moto",
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        log_path=base / "moto.log",
    )
    proc.start()
    try:
        assert proc.proc is not None
        # moto stands in for a managed service that does not share these two cores: it gets
        # the CPU first, or its O(queue length) sends turn any backlog into a spiral.
        os.setpriority(os.PRIO_PROCESS, proc.proc.pid, -10)
        wait_until(lambda: port_open(port), 30, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def start_server(settings: Any, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    from tests.realtime.conftest import settings_env  # BUILDPEER_* for a Settings

    served = settings.replace(
        events_consumer_enabled=True,
        push_consumer_enabled=False,
        digest_scheduler_enabled=False,
        realtime_tenant_connection_limit=0,
        log_level="WARNING",
        workers=1,  # an instance is one process here (--instances for more)
    )
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            env={**os.environ, **settings_env(served)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def start_balancer(port: int, targets: list[int]) -> subprocess.Popen[bytes]:
    """``bench/balancer.py`` on ``port`` in front of ``targets``, once it listens."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "balancer.py"), str(port), *map(str, targets)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("bench/balancer.py did not start")
    return proc


def connections_on(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` on its listening ``port``."""
    import psutil

    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


@dataclass
class Kill:
    """What ``--kill-one`` saw."""

    at_s: float = 0.0  # after t0
    held: int = 0  # WebSocket connections the killed instance held (its server socket's peers)
    dropped: int = 0  # client sessions that ended under them (by the kill or otherwise)
    complete: int = 0  # clients holding every publication of their channel exactly once
    incomplete: list[tuple[int, int, int]] = field(default_factory=list)  # (received, due, repeats)
    published: int = 0  # publications in the project channels (their tops added up)
    balancer_accepted: str = ""


@dataclass
class Report:
    clients: int
    projects: int
    minutes: float
    rate: float
    churn: float
    sent: int
    send_failures: int
    applied: int
    source: str
    totals: Totals
    tail_lost: int
    connected_at_end: int
    connect_s: float
    rss: list[tuple[float, int]]
    load: tuple[float, float, float]
    instances: int = 1
    cluster: bool = False
    elapsed_s: float = 0.0  # from the first event sent to the last publication delivered
    kill: Kill | None = None


async def run(settings: Any, events_url: str, args: argparse.Namespace) -> Report:
    import boto3

    from core.db import create_pool
    from core.events import Event, EventType, parse_event
    from core.status import UploadStatus
    from devstack.process import free_port, port_open, wait_until
    from server.realtime.broker import Publication
    from server.realtime.channels import parse_channel
    from server.realtime.node import event_channels, event_data
    from server.realtime.redis_broker import RedisBroker

    total_events = int(args.rate * args.minutes * 60)
    fixture = await prepare(settings, args.projects, total_events)
    ports = [free_port() for _ in range(args.instances)]
    log_path = Path(settings.var_dir) / "soak-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    servers = [start_server(settings, port, log_path) for port in ports]
    server = servers[-1]  # the one whose RSS is sampled (--kill-one kills the first)
    balancer: subprocess.Popen[bytes] | None = None
    kill = Kill() if args.kill_one else None
    totals = Totals()
    sent_at: dict[str, float] = {}
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = []
    rss: list[tuple[float, int]] = []
    try:
        for port in ports:
            await asyncio.to_thread(wait_until, functools.partial(port_open, port), 60, "buildpeer serve")
        urls = [f"ws://127.0.0.1:{port}/connection/websocket" for port in ports]
        if kill is not None:
            balancer_port = free_port()
            balancer = start_balancer(balancer_port, ports)
            urls = [f"ws://127.0.0.1:{balancer_port}/connection/websocket"]

        # Connect everyone, in waves (as reconnect storms are paced by backoff).
        started = time.monotonic()
        for i in range(args.clients):
            project = fixture.projects[i % len(fixture.projects)]
            client = Client(urls[i % len(urls)], fixture.token, f"project:{project}", totals, sent_at)
            clients.append(client)
            tasks.append(asyncio.create_task(client.run()))
            if i % 100 == 99:
                await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in clients[:-100])), 300)
        await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in clients)), 300)
        connect_s = time.monotonic() - started
        await asyncio.sleep(2)
        t0 = time.monotonic()
        rss.append((0.0, rss_kib(server.pid)))

        sqs = boto3.client(
            "sqs",
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="soak-send")
        failures = 0
        delivered_to_sqs = 0

        def send(bodies: list[tuple[str, bytes]]) -> None:
            nonlocal failures, delivered_to_sqs
            result = sqs.send_message_batch(
                QueueUrl=events_url,
                Entries=[{"Id": str(i), "MessageBody": body.decode()} for i, (_, body) in enumerate(bodies)],
            )
            failures += len(result.get("Failed", []))
            delivered_to_sqs += len(result.get("Successful", []))

        async def produce() -> int:
            loop = asyncio.get_running_loop()
            batch = 10
            pending = []
            for b in range(total_events // batch):
                due = t0 + b * batch / args.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                bodies = []
                for upload_id, project_id in fixture.uploads[b * batch : (b + 1) * batch]:
                    event = Event.new(
                        EventType.UPLOAD_COMPLETED,
                        tenant_id=fixture.tenant_id,
                        project_id=project_id,
                        upload_id=upload_id,
                        user_id=fixture.user_id,
                        status=UploadStatus.UPLOADED,
                    )
                    bodies.append((str(event.id), event.to_json()))
                now = time.monotonic()
                for event_id, _ in bodies:
                    sent_at[event_id] = now
                if args.source == "sqs":
                    pending.append(loop.run_in_executor(executor, send, bodies))
                else:
                    pending.append(asyncio.ensure_future(hub_publish(bodies)))
            await asyncio.gather(*pending)
            return (total_events // batch) * batch

        async def hub_publish(bodies: list[tuple[str, bytes]]) -> None:
            """What the consumer of another instance does after applying an event (Hub.publish)."""
            nonlocal delivered_to_sqs
            for _, body in bodies:
                event = parse_event(body)
                data = event_data(event)
                await asyncio.gather(
                    *(
                        broker.publish(channel.broker_name(event.tenant_id), data, key=str(event.upload_id))
                        for channel in event_channels(event)
                    )
                )
                delivered_to_sqs += 1

        async def churn() -> None:
            interval = 60.0 / (args.clients * args.churn)
            next_at = time.monotonic()
            while True:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                await random.choice(clients).churn()

        async def kill_one() -> None:
            """SIGKILL the first instance halfway through the events."""
            assert kill is not None
            await asyncio.sleep(max(0.0, t0 + args.minutes * 30 - time.monotonic()))
            kill.held = await asyncio.to_thread(connections_on, servers[0].pid, ports[0])
            before = sum(c.dropped for c in clients)
            servers[0].kill()
            kill.at_s = time.monotonic() - t0
            await asyncio.to_thread(servers[0].wait)
            print(f"  t={kill.at_s:6.0f}s SIGKILLed instance 1 ({kill.held} connections)", flush=True)
            await asyncio.sleep(20)
            print(f"  {sum(c.dropped for c in clients) - before} sessions dropped since", flush=True)

        async def sample() -> None:
            while True:
                await asyncio.sleep(args.sample_seconds)
                rss.append((time.monotonic() - t0, rss_kib(server.pid)))
                attrs = await asyncio.to_thread(
                    sqs.get_queue_attributes,
                    QueueUrl=events_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )
                depth = sum(int(v) for v in attrs["Attributes"].values())
                print(
                    f"  t={time.monotonic() - t0:6.0f}s rss={rss[-1][1] / 1024:.0f} MiB "
                    f"produced={len(sent_at)} in-sqs={delivered_to_sqs} queue-depth={depth} "
                    f"delivered={totals.delivered} lost={totals.lost} reconnects={totals.reconnects} "
                    f"errors={totals.errors}",
                    flush=True,
                )

        broker = RedisBroker(
            settings.redis_url, history_size=300, history_ttl=600, cluster=settings.redis_cluster
        )

        def ignore(channel: str, pub: Publication) -> None:
            return None

        async def nothing() -> None:
            return None

        await broker.start(ignore, nothing)
        churner = asyncio.create_task(churn())
        sampler = asyncio.create_task(sample())
        killer = asyncio.create_task(kill_one()) if kill is not None else None
        sent = await produce()
        # Drain: the consumer catches up, clients get the last publications.
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        applied = 0
        try:
            from core.db import tenant_transaction

            # --kill-one: two consumers catch up with a third's share on shared cores
            drain = (120 if args.source == "sqs" else 0) + (180 if args.kill_one else 0)
            deadline = time.monotonic() + drain
            while time.monotonic() < deadline:
                async with tenant_transaction(pool, fixture.tenant_id, readonly=True) as conn:
                    applied = int(
                        await conn.fetchval("SELECT count(*) FROM uploads WHERE status = 'uploaded'")
                    )
                if applied >= sent:
                    break
                await asyncio.sleep(1)
        finally:
            await pool.close()
        churner.cancel()
        await asyncio.sleep(5)
        if killer is not None:
            await killer
        elapsed_s = max(0.0, totals.last_delivery - t0)
        sampler.cancel()
        rss.append((time.monotonic() - t0, rss_kib(server.pid)))
        executor.shutdown()

        # Tail: every client connected now must be at the top of its channel.
        tops: dict[str, int] = {}
        for project in fixture.projects:
            channel = f"project:{project}"
            _, position = await broker.history(
                parse_channel(channel).broker_name(fixture.tenant_id), since=None, limit=0
            )
            tops[channel] = position.offset
        await broker.stop()
        tail_lost = 0
        connected = 0
        for client in clients:
            if client.live and client.offset is not None:
                connected += 1
                tail_lost += max(0, tops[client.channel] - client.offset)
        if kill is not None:
            kill.dropped = sum(c.dropped for c in clients)
            kill.published = sum(tops.values())
            for client in clients:
                due = tops[client.channel] - (client.start or 0)
                if client.received == due and client.repeats == 0 and client.live:
                    kill.complete += 1
                else:
                    kill.incomplete.append((client.received, due, client.repeats))
        return Report(
            clients=args.clients,
            projects=args.projects,
            minutes=args.minutes,
            rate=args.rate,
            churn=args.churn,
            sent=sent,
            send_failures=failures,
            applied=applied,
            source=args.source,
            totals=totals,
            tail_lost=tail_lost,
            connected_at_end=connected,
            connect_s=connect_s,
            rss=rss,
            load=os.getloadavg(),
            instances=args.instances,
            cluster=bool(settings.redis_cluster),
            elapsed_s=elapsed_s,
            kill=kill,
        )
    finally:
        for client in clients:
            client.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for each in servers:
            each.terminate()
        for each in servers:
            try:
                each.wait(30)
            except subprocess.TimeoutExpired:
                each.kill()
                each.wait()
        if balancer is not None:
            balancer.terminate()
            try:
                out, _ = balancer.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                balancer.kill()
                out, _ = balancer.communicate()
            if kill is not None:
                kill.balancer_accepted = out.decode().strip().rsplit(" ", 1)[-1] or "?"


def render(r: Report, command: str) -> str:
    t = r.totals
    lat = t.latencies
    rss_rows = [f"| {at:.0f} s | {kib / 1024:.0f} MiB |" for at, kib in r.rss]
    first_min = [kib for at, kib in r.rss if at >= 60] or [r.rss[0][1]]
    growth = (r.rss[-1][1] - first_min[0]) / 1024
    lost_total = t.lost + r.tail_lost
    lines = [
        HEADING,
        "",
        f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs shared by the server, the "
        f"clients, PostgreSQL, Redis and moto; Python {platform.python_version()}).",
        "",
        f"One `buildpeer serve` process (hub + SQS events consumer). {r.clients:,} protocol-level "
        f"WebSocket clients in the bench process, each subscribed with recovery to one of {r.projects} "
        f"project channels ({r.clients // r.projects} per channel). Churn: {r.churn:.0%} of the clients per "
        f"minute have their connection closed and reconnect after "
        f"{RECONNECT_PAUSE[0]}-{RECONNECT_PAUSE[1]} s, "
        f"recovering from history. Events: {r.rate:.0f} uploads/s for {r.minutes:g} min, one "
        + (
            "`upload.completed` each, sent into the `events` queue (SNS raw-delivery body, moto in its own "
            "process); the server's consumer applies each in PostgreSQL, writes the status cache and "
            "publishes to the upload's four channels."
            if r.source == "sqs"
            else "`upload.completed` each, published by the bench to the upload's four channels through "
            "the Redis broker — what the events consumer of another server instance does after applying "
            "it (`--source broker`: the SQS and PostgreSQL legs are not in this run)."
        ),
        "",
        "| figure | value |",
        "|---|---|",
        (
            f"| events sent / applied | {r.sent:,} / {r.applied:,} (send failures: {r.send_failures}) |"
            if r.source == "sqs"
            else f"| events published (4 channels each) | {r.sent:,} |"
        ),
        f"| publications delivered (live + recovered) | {t.delivered:,} ({t.recovered_pubs:,} recovered) |",
        f"| **publications lost by connected clients** | **{lost_total}** (in-session gaps {t.lost}, "
        f"behind the channel top at the end {r.tail_lost}) |",
        f"| duplicates | {t.duplicates} |",
        f"| reconnects (churn) / recovered / unrecovered | {t.reconnects:,} / {t.recovered:,} / "
        f"{t.unrecovered} |",
        f"| connection errors (retried) | {t.errors} |",
        f"| clients connected at the end | {r.connected_at_end:,} / {r.clients:,} |",
        f"| delivery latency, event sent → live publication (p50 / p99 / max) | "
        f"{statistics.median(lat) * 1000:.0f} ms / {pct(lat, 0.99) * 1000:.0f} ms / {max(lat) * 1000:.0f} ms "
        f"({len(lat):,} samples) |"
        if lat
        else "| delivery latency | no samples |",
        f"| connect + subscribe all | {r.connect_s:.1f} s |",
        f"| server RSS growth from minute 1 to the end | {growth:+.0f} MiB |",
        f"| load average at the end (1/5/15 min) | {r.load[0]:.1f} / {r.load[1]:.1f} / {r.load[2]:.1f} |",
        "",
        "Server RSS over the run (t = 0 once every client is connected and subscribed):",
        "",
        "| t | server RSS |",
        "|---|---|",
        *rss_rows,
        "",
    ]
    return "\n".join(lines)


def render_kill(r: Report, command: str) -> str:
    """``--kill-one``: the ``### One of three instances SIGKILLed`` part."""
    assert r.kill is not None
    k, t = r.kill, r.totals
    lat = t.latencies
    lost = t.lost + r.tail_lost
    incomplete = ", ".join(f"{got}/{due} (+{rep} repeats)" for got, due, rep in k.incomplete[:5])
    redis = "a six-process Redis Cluster (3 masters + 3 replicas)" if r.cluster else "one Redis"
    return "\n".join(
        [
            KILL_HEADING,
            "",
            f"Command: `{command}` (load average at the end {r.load[0]:.1f} / {r.load[1]:.1f} / "
            f"{r.load[2]:.1f}).",
            "",
            f"{r.instances} `buildpeer serve` processes on {redis}, behind a local round-robin "
            f"balancer in its own process (`bench/balancer.py`). {r.clients:,} protocol-level clients "
            f"connect through it ({r.clients // r.projects} per project channel, recovery on, churn "
            f"{r.churn:.0%}/min); {r.rate:.0f} events/s for {r.minutes:g} min into the events queue, "
            f"consumed by every instance. At t = {k.at_s:.0f} s instance 1 is SIGKILLed while it "
            f"holds {k.held:,} of the connections; they reconnect through the balancer to the others "
            "and recover from history. Per client: complete = every offset of its channel from its "
            "first subscribe to the channel's top, each exactly once.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| events sent / applied / published to the project channels | {r.sent:,} / {r.applied:,} / "
            f"{k.published:,} |",
            f"| connections on the killed instance / client sessions dropped | {k.held:,} / {k.dropped:,} |",
            f"| reconnects recovered / unrecovered | {t.recovered:,} / {t.unrecovered} |",
            f"| **clients complete (every publication exactly once)** | **{k.complete:,} / {r.clients:,}**"
            + (f" (short: {incomplete})" if k.incomplete else "")
            + " |",
            f"| **publications lost** | **{lost}** (in-session gaps {t.lost}, behind the top at the end "
            f"{r.tail_lost}) |",
            f"| duplicates | {t.duplicates} |",
            f"| publications delivered (live + recovered) | {t.delivered:,} ({t.recovered_pubs:,} "
            "recovered) |",
            f"| delivery latency p50 / p99 / max | {statistics.median(lat) * 1000:.0f} ms / "
            f"{pct(lat, 0.99) * 1000:.0f} ms / {max(lat) * 1000:.0f} ms |"
            if lat
            else "| delivery latency | no samples |",
            f"| clients connected at the end | {r.connected_at_end:,} / {r.clients:,} |",
            f"| connections the balancer accepted | {k.balancer_accepted} |",
            "",
        ]
    )


def write_kill(section: str) -> None:
    """Replace (or add at the end of ``COMPARE_HEADING``) the ``KILL_HEADING`` part."""
    text = RESULTS.read_text()
    start = text.find(KILL_HEADING + "\n")
    if start >= 0:
        ends = [e for e in (text.find("\n## ", start), text.find("\n### ", start + 1)) if e >= 0]
        end = min(ends) + 1 if ends else len(text)
        text = text[:start] + section.rstrip("\n") + "\n\n" + text[end:]
    else:
        at = text.find(COMPARE_HEADING + "\n")
        if at < 0:
            text = text.rstrip("\n") + "\n\n" + COMPARE_HEADING + "\n\n" + section
        else:
            end = text.find("\n## ", at + 1)
            end = end + 1 if end >= 0 else len(text)
            text = text[:end].rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n\n" + text[end:]
    RESULTS.write_text(text.rstrip("\n") + "\n")


def kept_kill_part() -> str:
    """The ``KILL_HEADING`` part now in RESULTS.md ('' if none): ``--compare --write`` keeps it."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(KILL_HEADING + "\n")
    if start < 0:
        return ""
    ends = [e for e in (text.find("\n## ", start), text.find("\n### ", start + 1)) if e >= 0]
    return text[start : min(ends) + 1 if ends else len(text)]


def render_compare(reports: list[Report], command: str) -> str:
    """Single Redis vs Cluster, 1 vs N instances, side by side."""
    rows = []
    for r in reports:
        t = r.totals
        lat = t.latencies
        p99 = f"{pct(lat, 0.99) * 1000:.0f} ms" if lat else "no samples"
        rate = t.delivered / r.elapsed_s if r.elapsed_s else 0.0
        lost = t.lost + r.tail_lost
        rows.append(
            f"| {'Redis Cluster (3 + 3 replicas)' if r.cluster else 'single Redis'} | {r.instances} | "
            f"{t.delivered:,} | {rate:,.0f} | {p99} | **{lost}** | {t.duplicates} | "
            f"{t.reconnects:,} / {t.unrecovered} | {r.connected_at_end:,} / {r.clients:,} |"
        )
    first = reports[0]
    return "\n".join(
        [
            COMPARE_HEADING,
            "",
            f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs shared by every server "
            f"process, the clients, PostgreSQL, the Redis processes and moto; Python "
            f"{platform.python_version()}).",
            "",
            f"Each row one run, one after the other in the same bench process: {first.clients:,} "
            f"protocol-level WebSocket clients spread evenly over the instances, {first.projects} project "
            f"channels, churn {first.churn:.0%}/min, {first.rate:.0f} events/s for {first.minutes:g} min "
            f"(`--source {first.source}`). Deliveries/s = publications delivered / (first event sent → "
            "last publication delivered). Lost = in-session gaps + distance behind the channel top "
            "at the end.",
            "",
            "| Redis | instances | delivered | deliveries/s | p99 latency | lost | duplicates | "
            "reconnects / unrecovered | connected at end |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=100.0, help="uploads (events) per second")
    parser.add_argument(
        "--churn", type=float, default=0.10, help="share of the clients reconnecting per minute"
    )
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument(
        "--source",
        choices=["sqs", "broker"],
        default="sqs",
        help="sqs: events into the server's events queue (full path); broker: the publications the "
        "consumer makes, published through the Redis broker as another instance would",
    )
    parser.add_argument("--instances", type=int, default=1, help="buildpeer serve processes")
    parser.add_argument("--redis-cluster", action="store_true", help="a six-process Redis Cluster")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="single Redis vs Cluster x 1 vs 3 instances, side by side (ignores the two above)",
    )
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="instances behind a local balancer (3 unless --instances says more); the first is "
        "SIGKILLed halfway; every publication accounted per client",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.kill_one and args.compare:
        parser.error("--kill-one and --compare are separate runs")
    if args.kill_one and args.instances == 1:
        args.instances = 3
    if args.clients < args.projects or args.clients <= 0 or args.rate <= 0 or args.minutes <= 0:
        parser.error("need clients >= projects > 0, rate > 0 and minutes > 0")
    import resource

    from devstack.aws import provision
    from devstack.ephemeral import ephemeral_services

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with tempfile.TemporaryDirectory(prefix="bp-soak-") as tmp:
        os.chmod(tmp, 0o755)
        with (
            ephemeral_services(
                Path(tmp),
                jwt_secret="soak-secret-0123456789abcdef-0123456789",
                stack="bpsoak",
                bucket="bpsoak-uploads",
                rate_limit_ip_per_minute=0,
                rate_limit_tenant_per_minute=0,
            ) as services,
            moto_process(Path(tmp)) as moto_url,
        ):
            # The in-process moto of ephemeral_services would share this process's GIL with the
            # clients: the server and the event sender use one in its own process instead.
            settings = services.settings.replace(aws_endpoint_url=moto_url)
            provisioned = provision(settings)
            events_url = provisioned.queue_urls["events"]
            with contextlib.ExitStack() as stack:
                cluster_settings = settings
                if args.compare or args.redis_cluster:
                    from devstack.redis_cluster import RedisCluster

                    cluster = stack.enter_context(RedisCluster(Path(tmp) / "redis-cluster"))
                    cluster_settings = settings.replace(redis_url=cluster.url, redis_cluster=True)
                if args.compare:
                    reports = []
                    for on_cluster, instances in ((False, 1), (False, 3), (True, 1), (True, 3)):
                        print(f"-- {'cluster' if on_cluster else 'single Redis'}, {instances} instance(s)")
                        args.instances = instances
                        chosen = cluster_settings if on_cluster else settings
                        reports.append(asyncio.run(run(chosen, events_url, args)))
                else:
                    chosen = cluster_settings if args.redis_cluster else settings
                    report = asyncio.run(run(chosen, events_url, args))
    command = ".venv/bin/python bench/soak.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    if args.compare:
        section = render_compare(reports, command.strip())
        print(section)
        if args.write:
            write_section(COMPARE_HEADING, section.rstrip("\n") + "\n\n" + kept_kill_part())
        return
    if args.kill_one:
        section = render_kill(report, command.strip())
        print(section)
        if args.write:
            write_kill(section)
        return
    section = render(report, command.strip())
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
