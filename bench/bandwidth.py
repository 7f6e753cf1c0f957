"""Bandwidth of the real-time protocols, and fan-out over HTTP-streaming against WebSocket.

1. **Bytes on the wire per publication.** A realistic day of one project (200 uploads, each
   pending → uploading with progress → uploaded → scanning → processing → ready, interleaved
   as a site's crews upload through the day; every publication the event plus the upload's
   public document, as the node publishes them) replayed through Redis into the hub, in its
   own process, to one subscribed client per configuration: JSON, JSON + Fossil delta,
   Protobuf, Protobuf + delta, each with and without permessage-deflate. A counting TCP
   proxy between client and server measures every byte the server sent after the subscribe
   reply (WebSocket framing and pings included), divided by the publications received.
2. **Fan-out.** 1,000 clients subscribed to one channel over ``/connection/http_stream``
   and, in the same run, over ``/connection/websocket``; clients in separate processes
   (bench/fanout.py's load generator and its measure: paced publish→receive latency, then a
   burst until every client has every publication).

Usage: ``.venv/bin/python bench/bandwidth.py --write`` (replaces ``## Bandwidth`` in
bench/RESULTS.md).
"""

# ruff: noqa: E501  (Markdown templates)
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fanout  # noqa: E402
from bench.presign import make_tenant, services  # noqa: E402
from bench.results import write_section  # noqa: E402

HEADING = "## Bandwidth"
UPLOADS = 200
PROGRESS_STEPS = 10


# --- the day's publications ---


def day_of_publications(
    project_id: uuid.UUID, tenant_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> list[bytes]:
    """A working day (07:00-18:00) of 200 uploads' status and progress on one project."""
    from core.events import Event, EventType
    from core.status import UploadStatus
    from server.realtime.node import event_data

    rnd = random.Random(14)
    start = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    timeline: list[tuple[datetime, Event, dict[str, Any]]] = []
    names = ["fachada-norte", "losa-piso-3", "armado-columna", "planta-electrica", "acta-visita", "IMG"]
    for n in range(UPLOADS):
        upload_id = uuid.uuid4()
        user = rnd.choice(user_ids)
        size = rnd.choice([rnd.randint(200_000, 4_000_000), rnd.randint(5_000_000, 80_000_000)])
        pdf = rnd.random() < 0.25
        name = f"{rnd.choice(names)}-{n:03d}.{'pdf' if pdf else 'jpg'}"
        created = start + timedelta(seconds=rnd.randint(0, 11 * 3600))
        version = 1
        doc: dict[str, Any] = {
            "id": str(upload_id),
            "project_id": str(project_id),
            "uploader_id": str(user),
            "file_name": name,
            "declared_type": "application/pdf" if pdf else "image/jpeg",
            "sniffed_type": None,
            "size": size,
            "status": "pending",
            "reason": None,
            "parts_done": 0,
            "bytes_done": 0,
            "sha256": None,
            "declared_sha256": None,
            "sha256_verified": None,
            "metadata": {},
            "version": version,
            "derivatives": [],
            "created_at": created.isoformat(),
            "updated_at": created.isoformat(),
        }
        at = created
        parts = max(1, size // 5_242_880)
        steps: list[tuple[EventType, UploadStatus, dict[str, Any]]] = [
            (EventType.UPLOAD_PROGRESS, UploadStatus.UPLOADING, {"bytes_done": 0})
        ]
        for k in range(1, PROGRESS_STEPS + 1):
            steps.append(
                (
                    EventType.UPLOAD_PROGRESS,
                    UploadStatus.UPLOADING,
                    {"bytes_done": size * k // PROGRESS_STEPS},
                )
            )
        steps += [
            (EventType.UPLOAD_COMPLETED, UploadStatus.UPLOADED, {}),
            (EventType.PROCESSING_COMPLETED, UploadStatus.SCANNING, {}),
            (EventType.PROCESSING_COMPLETED, UploadStatus.PROCESSING, {"sniffed_type": doc["declared_type"]}),
            (EventType.PROCESSING_COMPLETED, UploadStatus.READY, {}),
        ]
        for etype, status, change in steps:
            at += timedelta(seconds=rnd.uniform(2, 40))
            version += 1
            doc = {**doc, "status": status.value, "version": version, "updated_at": at.isoformat()}
            if "bytes_done" in change:
                doc["bytes_done"] = change["bytes_done"]
                doc["parts_done"] = parts * change["bytes_done"] // size
            if "sniffed_type" in change:
                doc["sniffed_type"] = change["sniffed_type"]
                doc["sha256"] = f"{rnd.getrandbits(256):064x}"
                doc["sha256_verified"] = True
            if status is UploadStatus.READY:
                doc["derivatives"] = (
                    ["preview.png", "text.txt"] if pdf else ["thumb-200.jpg", "thumb-800.jpg"]
                )
                doc["metadata"] = {"pages": rnd.randint(1, 40)} if pdf else {"width": 4000, "height": 3000}
            data = (
                {"bytes_done": doc["bytes_done"], "bytes_total": size}
                if etype is EventType.UPLOAD_PROGRESS
                else {}
            )
            event = Event.new(
                etype,
                tenant_id=tenant_id,
                project_id=project_id,
                upload_id=upload_id,
                user_id=user,
                status=status,
                data=data,
            )
            timeline.append((at, event, dict(doc)))
    timeline.sort(key=lambda item: item[0])
    return [event_data(event, doc) for _, event, doc in timeline]


# --- bytes on the wire ---


class CountingProxy:
    """TCP proxy to the server counting the bytes the server sends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


@dataclass
class WireResult:
    name: str
    deflate: bool
    received: int
    bytes_per_pub: float
    deltas: int


async def wire_bytes(
    port: int,
    token: str,
    channel: str,
    pubs: list[bytes],
    publish: Any,
    *,
    binary: bool,
    delta: bool,
    deflate: bool,
) -> WireResult:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    from server.realtime.codec import delimited, split_delimited
    from server.realtime.proto import centrifugo_client_pb2 as pb

    proxy = CountingProxy(port)
    await proxy.start()
    url = f"ws://127.0.0.1:{proxy.port}/connection/websocket"
    received = deltas = 0
    done = asyncio.Event()
    try:
        async with connect(
            url,
            subprotocols=[Subprotocol("centrifuge-protobuf")] if binary else None,
            compression="deflate" if deflate else None,
            max_queue=None,
            ping_interval=None,
        ) as ws:
            if binary:
                await ws.send(
                    delimited(pb.Command(id=1, connect=pb.ConnectRequest(token=token)))
                    + delimited(
                        pb.Command(
                            id=2,
                            subscribe=pb.SubscribeRequest(channel=channel, delta="fossil" if delta else ""),
                        )
                    )
                )
            else:
                sub: dict[str, Any] = {"channel": channel, **({"delta": "fossil"} if delta else {})}
                await ws.send(
                    orjson.dumps({"id": 1, "connect": {"token": token}}).decode()
                    + "\n"
                    + orjson.dumps({"id": 2, "subscribe": sub}).decode()
                )
            subscribed = asyncio.Event()

            async def read() -> None:
                nonlocal received, deltas
                async for frame in ws:
                    if binary:
                        assert isinstance(frame, bytes)
                        for raw in split_delimited(frame):
                            reply = pb.Reply()
                            reply.ParseFromString(raw)
                            if reply.id == 2:
                                subscribed.set()
                            elif reply.HasField("push") and reply.push.HasField("pub"):
                                received += 1
                                deltas += reply.push.pub.delta
                            elif not raw:
                                await ws.send(delimited(pb.Command()))
                    else:
                        for line in str(frame).split("\n"):
                            message = orjson.loads(line)
                            if message.get("id") == 2:
                                subscribed.set()
                            elif "pub" in message.get("push", {}):
                                received += 1
                                deltas += bool(message["push"]["pub"].get("delta"))
                            elif not message:
                                await ws.send("{}")
                    if received >= len(pubs):
                        done.set()

            reader = asyncio.create_task(read())
            await asyncio.wait_for(subscribed.wait(), 30)
            await asyncio.sleep(0.2)
            before = proxy.down
            for data in pubs:
                await publish(data)
            await asyncio.wait_for(done.wait(), 120)
            after = proxy.down
            reader.cancel()
    finally:
        await proxy.stop()
    name = ("Protobuf" if binary else "JSON") + (" + delta" if delta else "")
    return WireResult(name, deflate, received, (after - before) / max(1, received), deltas)


# --- fan-out over http_stream (client processes) ---


async def stream_client(
    url: str, token: str, channel: str, rec: fanout.Recorder, ready: asyncio.Queue[None]
) -> None:
    """One ``/connection/http_stream`` client (raw HTTP/1.1, chunked response lines)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    hostname, _, port = host.partition(":")
    body = (
        orjson.dumps(
            {
                "id": 1,
                "connect": {"token": token},
            }
        )
        + b"\n"
    )
    reader, writer = await asyncio.open_connection(hostname, int(port))
    writer.write(
        f"POST /{rest} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # status line and headers
    buffer = b""
    subscribed = False
    try:
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            buffer += await reader.readexactly(size + 2)
            buffer = buffer[:-2] if buffer.endswith(b"\r\n") else buffer
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line:
                    continue
                message = orjson.loads(line)
                if "push" in message:
                    rec.record(message["push"]["pub"]["data"])
                elif "connect" in message and not subscribed:
                    subscribed = True
                    session = message["connect"]["session"]
                    await _emulate(host, session, {"id": 2, "subscribe": {"channel": channel}})
                    ready.put_nowait(None)
    finally:
        writer.close()


async def _emulate(host: str, session: str, command: dict[str, Any]) -> None:
    hostname, _, port = host.partition(":")
    body = orjson.dumps({"session": session, "data": orjson.dumps(command).decode()})
    reader, writer = await asyncio.open_connection(hostname, int(port))
    writer.write(
        f"POST /emulation HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"/emulation answered {status!r}")
    writer.close()


async def start_clients(
    kind: str, url: str, n: int, workers: int, token: str, channel: str
) -> fanout.ClientProcesses:
    counts = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__)), "clients", "--kind", kind, "--url", url,
            "--clients", str(count), "--token", token, "--channel", channel,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, limit=2**28,
        )
        for count in counts
    ]  # fmt: skip
    return fanout.ClientProcesses(procs)


def run_clients(kind: str, url: str, count: int, token: str, channel: str) -> None:
    if kind == "stream":
        # fanout's load generator, with the http_stream client in the hub client's place
        fanout.hub_client = stream_client  # type: ignore[assignment]
    fanout.run_clients("hub", url, count, token, channel)


# --- the run ---


async def run(
    settings: Any, n: int, paced: int, burst: int, workers: int
) -> tuple[list[WireResult], list[fanout.Result], int]:
    from devstack.process import free_port
    from server.realtime.broker import Publication
    from server.realtime.channels import parse_channel
    from server.realtime.redis_broker import RedisBroker
    from tests.realtime.conftest import settings_env

    bench = await make_tenant(settings)
    channel = f"project:{bench.project_id}"
    token = bench.tokens["investor"]
    users = [uuid.uuid4() for _ in range(12)]
    pubs = day_of_publications(bench.project_id, bench.tenant_id, users)
    # pings every 5 minutes on both transports: the clients here do not answer them
    env = settings_env(settings.replace(realtime_tenant_connection_limit=0, realtime_ping_seconds=300.0))
    port = free_port()
    hub = fanout.spawn(["serve-hub", "--port", str(port)], env)
    wire: list[WireResult] = []
    fan: list[fanout.Result] = []
    try:
        fanout.wait_port(port)
        assert settings.redis_url
        broker = RedisBroker(settings.redis_url, history_size=300, history_ttl=600)

        def ignore(channel: str, pub: Publication) -> None:
            return None

        async def nothing() -> None:
            return None

        await broker.start(ignore, nothing)
        key = parse_channel(channel).broker_name(bench.tenant_id)

        async def publish(data: bytes) -> None:
            await broker.publish(key, data)

        for binary in (False, True):
            for delta in (False, True):
                for deflate in (False, True):
                    wire.append(
                        await wire_bytes(
                            port, token, channel, pubs, publish, binary=binary, delta=delta, deflate=deflate
                        )
                    )
        for name, kind, url in (
            ("WebSocket (/connection/websocket)", "ws", f"ws://127.0.0.1:{port}/connection/websocket"),
            (
                "HTTP-streaming (/connection/http_stream)",
                "stream",
                f"http://127.0.0.1:{port}/connection/http_stream",
            ),
        ):
            fan.append(
                await fanout.measure(
                    name, hub.pid, n,
                    lambda kind=kind, url=url: start_clients(kind, url, n, workers, token, channel),  # type: ignore[misc]
                    publish, paced=paced, burst=burst,
                )
            )  # fmt: skip
        await broker.stop()
    finally:
        hub.terminate()
        hub.wait(30)
        await bench.pool.close()
    return wire, fan, len(pubs)


def report(
    wire: list[WireResult], fan: list[fanout.Result], pubs: int, sizes: list[int], command: str, workers: int
) -> str:
    mean = sum(sizes) / len(sizes)
    lines = [
        HEADING,
        "",
        f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}).",
        "",
        f"A day of one project: {UPLOADS} uploads, {pubs:,} publications on its `project:` channel (status "
        f"and {PROGRESS_STEPS} progress steps per upload, interleaved over 07:00-18:00), each the event plus the "
        f"upload's document: {mean:.0f} bytes of JSON on average. Bytes on the wire: what the server sent after the "
        "subscribe reply, counted by a TCP proxy (WebSocket framing included), per publication received.",
        "",
        "| protocol | permessage-deflate | publications received | bytes on the wire per publication | sent as deltas | vs JSON |",
        "|---|---|---|---|---|---|",
    ]
    plain = next(w for w in wire if w.name == "JSON" and not w.deflate).bytes_per_pub
    for w in wire:
        lines.append(
            f"| {w.name} | {'on' if w.deflate else 'off'} | {w.received:,} | {w.bytes_per_pub:.0f} | "
            f"{w.deltas:,} | {w.bytes_per_pub / plain:.2f}x |"
        )
    lines += [
        "",
        f"Fan-out, same run: {fan[0].clients:,} clients on one channel, server in its own process, clients in "
        f"{workers} processes (bench/fanout.py's load generator and measure: paced publications every 250 ms for "
        "latency, then a burst until every client has every publication).",
        "",
        "| transport | clients | p50 latency | p99 latency | deliveries/s | connect all |",
        "|---|---|---|---|---|---|",
    ]
    for r in fan:
        lines.append(
            f"| {r.name} | {r.clients:,} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | {r.deliveries_per_s:,.0f} "
            f"({r.delivered:,}/{r.expected:,}) | {r.connect_s:.1f} s |"
        )
    ws, stream = fan
    lines += [
        "",
        f"- HTTP-streaming: {stream.deliveries_per_s / ws.deliveries_per_s:.2f}x the WebSocket's deliveries/s, "
        f"{stream.p99_ms / ws.p99_ms:.2f}x its p99.",
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "clients"])
    parser.add_argument("--clients", default="1000")
    parser.add_argument("--paced", type=int, default=20)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--client-procs", type=int, default=3)
    parser.add_argument("--kind", default="ws", choices=["ws", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--channel", default="", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.mode == "clients":
        run_clients(args.kind, args.url, int(args.clients), args.token, args.channel)
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with services() as settings:
        wire, fan, pubs = asyncio.run(
            run(settings, int(args.clients), args.paced, args.burst, args.client_procs)
        )
    sizes = [len(p) for p in day_of_publications(uuid.uuid4(), uuid.uuid4(), [uuid.uuid4()])]
    command = ".venv/bin/python bench/bandwidth.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    section = report(wire, fan, pubs, sizes, command.strip(), args.client_procs)
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
