"""WebSocket fan-out: the hub (Centrifugo protocol, Redis broker) against python-socketio
with its Redis manager (AsyncRedisManager), same Redis, same machine, same run.

Each server runs in its own process — the hub is ``buildpeer serve`` itself (the whole app,
one worker: the middleware, uvicorn settings and GC policy it runs with); the N WebSocket
clients (:mod:`bench.rawws`: one ``asyncio.Protocol`` per connection, a few microseconds per
message, the same code for both sides) are spread over ``--client-procs`` processes (uvloop),
so the load generator is not what is measured; this process publishes through
Redis, the way a second server instance would: the hub via its broker (history + PUB/SUB),
socket.io via a write-only ``AsyncRedisManager``, and gathers what the client processes
measured.

Figures: publish→receive latency (p50/p99 over paced publications), deliveries per second
(burst of publications to all N clients), and server memory per idle connection (RSS
growth after N clients connected and subscribed, divided by N).

Usage: ``.venv/bin/python bench/fanout.py --clients 2000 --write`` (``--write`` replaces the
``## Fan-out`` section of bench/RESULTS.md).
"""

# ruff: noqa: E501  (Markdown templates)
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import rawws  # noqa: E402
from bench.measure import pct, rss_kib  # noqa: E402
from bench.presign import make_tenant, services  # noqa: E402
from bench.rawws import RawWebSocket  # noqa: E402
from bench.results import write_section  # noqa: E402

HEADING = "## Fan-out"

# What each step of issue 16 removed and gained (2,000 clients unless said; figures from
# runs of this script on the shared 2-core machine, load noted).
STEPS = """What each step removed and gained (issue 16; 2,000 clients, `--clients 2000` runs, load noted):

1. **Baseline** (load 4.0): hub p50 96 ms / p99 409 ms, 27,926 deliveries/s, 33.7 KiB per idle connection; socket.io p99 1,213 ms, 9,340/s, 41.7 KiB (3.0x, 0.34x).
2. **Clients outside and cheap** (`bench/rawws.py` instead of a `websockets` client object, task and coroutine wake-up per connection, for both servers; load 9): the three client processes no longer spend more CPU than the server they measure. Hub p50 92 ms / p99 616 ms; socket.io p99 9,059 ms under that load.
3. **No task per write** (`server/realtime/writer.py`: the writers given something in one loop iteration are written in one `call_soon` callback, each write's coroutine driven to completion there; only a write that has to wait becomes a task; load 8): 26.5k → 129k deliveries/s.
4. **Where the p99 was**: a probe of the server's `gc.callbacks` showed full collections of 0.3–1 s (up to 960 ms) walking every object the process had made since start, with each publication's deliveries waiting behind them — the 1-in-20 outliers (one publication at 300+ ms for all clients, the rest at 10–60 ms). `buildpeer serve` freezes the heap it starts with and raises the young threshold (`server/gc_policy.py`); this benchmark now runs `buildpeer serve` itself (it ran a bare Starlette app under other uvicorn settings).
5. **Lighter connections** (load 3): per idle connection 138 → 114 objects tracked by the collector (measured before the front door); the transport speaks ASGI `receive`/`send` (no Starlette `WebSocket`, its header views and coroutine layers), the route is a plain ASGI endpoint that `WebSocketFront` reaches before the middleware stack (each middleware was a suspended coroutine per connection), an idle session holds no last frame or commands and no `asyncio.Event`, the writer holds no deque while idle, uvicorn's WebSocket keepalive timer is off (the protocol pings each client): 32.1 → 23.5 KiB.

uvicorn 0.54's WebSocket implementations, RSS growth per idle connection at 3,000 connections (same run, load ~5): a bare ASGI app 25.9 KiB (`websockets`, legacy, several tasks per connection) / 18.7 (`websockets-sansio`) / 17.0 (`wsproto`); a bare Starlette route 31.2 / 23.9 / 22.1. Under `buildpeer serve` at 2,000: sansio 23.5 KiB, wsproto 21.1 KiB (p99 116 vs 134 ms, within the noise). `buildpeer serve` stays on websockets-sansio: permessage-deflate, which browsers always negotiate (the bench clients do not), keeps 12-bit windows there and 15-bit ones in uvicorn's wsproto (several times the memory per compressed connection).
"""


# --- the peer (run as `fanout.py serve-sio`; the hub is `buildpeer serve`) ---


def serve_sio(port: int, redis_url: str) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(
        async_mode="asgi", client_manager=socketio.AsyncRedisManager(redis_url), cors_allowed_origins=[]
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, "bench")

    uvicorn.run(socketio.ASGIApp(sio), host="127.0.0.1", port=port, log_level="warning", backlog=4096)


# --- clients ---


@dataclass
class Recorder:
    expected: int = 0
    latencies: dict[int, list[float]] = field(default_factory=dict)
    count: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, payload: dict[str, Any]) -> None:
        self.latencies.setdefault(payload["i"], []).append(time.time() - payload["t"])
        self.count += 1
        if self.expected and self.count >= self.expected:
            self.done.set()

    def reset(self, expected: int) -> None:
        self.latencies.clear()
        self.count = 0
        self.expected = expected
        self.done.clear()


def hub_client(
    url: str, token: str, channel: str, rec: Recorder, ready: Callable[[], None]
) -> Awaitable[RawWebSocket]:
    """A Centrifugo-protocol client: connect + subscribe in one frame, answer pings ``{}``."""
    hello = (
        orjson.dumps({"id": 1, "connect": {"token": token}}).decode()
        + "\n"
        + orjson.dumps({"id": 2, "subscribe": {"channel": channel}}).decode()
    )
    subscribed = False

    def on_text(ws: RawWebSocket, text: str) -> None:
        nonlocal subscribed
        for line in text.split("\n"):
            message = orjson.loads(line)
            if not message:
                ws.send_text("{}")
            elif "push" in message:
                rec.record(message["push"]["pub"]["data"])
            elif message.get("id") == 2 and not subscribed:
                if "error" in message:
                    raise RuntimeError(message)
                subscribed = True
                ready()

    return rawws.connect(url, lambda ws: ws.send_text(hello), on_text)


def sio_client(url: str, rec: Recorder, ready: Callable[[], None]) -> Awaitable[RawWebSocket]:
    """An Engine.IO 4 / Socket.IO 5 client: open, join the default namespace, answer pings."""

    def on_text(ws: RawWebSocket, text: str) -> None:
        if text == "2":
            ws.send_text("3")
        elif text.startswith("42"):
            _, payload = orjson.loads(text[2:])
            rec.record(payload)
        elif text.startswith("40"):
            ready()
        elif text.startswith("0"):
            ws.send_text("40")

    return rawws.connect(url, lambda ws: None, on_text)


@dataclass
class Result:
    name: str
    clients: int
    p50_ms: float
    p99_ms: float
    deliveries_per_s: float
    kib_per_conn: float
    connect_s: float
    delivered: int = 0
    expected: int = 0


# --- client processes (run as `fanout.py clients ...`): the load generator, spread out ---


def run_clients(kind: str, url: str, count: int, token: str, channel: str) -> None:
    """``count`` clients in this process; commands on stdin, JSON answers on stdout:
    ``{"expect": k}`` → ``{"armed": true}``, then, once every client has its k publications
    (or 300 s passed), ``{"done": true, "latencies": [...], "last": <receive time>, "count": n}``."""
    import uvloop

    uvloop.run(_clients(kind, url, count, token, channel))


async def _clients(kind: str, url: str, count: int, token: str, channel: str) -> None:
    rec = Recorder()
    ready: asyncio.Queue[None] = asyncio.Queue()
    last = [0.0]
    record = rec.record

    def stamped(payload: dict[str, Any]) -> None:
        record(payload)
        last[0] = time.time()

    rec.record = stamped  # type: ignore[method-assign]
    connected = 0
    gone = 0

    def on_ready() -> None:
        nonlocal connected
        connected += 1
        ready.put_nowait(None)

    conns: list[RawWebSocket] = []
    for i in range(count):
        if kind == "hub":
            conns.append(await hub_client(url, token, channel, rec, on_ready))
        else:
            conns.append(await sio_client(url, rec, on_ready))
        if i % 100 == 99:  # in waves, as reconnect storms are paced by backoff
            while connected < i - 200:
                await asyncio.wait_for(ready.get(), 120)
    while connected < count:
        await asyncio.wait_for(ready.get(), 120)
    gone = sum(1 for c in conns if c.closed.done())
    if gone:
        raise RuntimeError(f"{gone} connections closed by the server")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(message).decode() + "\n")
        sys.stdout.flush()

    say({"ready": True})
    while line := await reader.readline():
        command = orjson.loads(line)
        if "expect" not in command:
            break
        rec.reset(count * int(command["expect"]))
        say({"armed": True})
        try:
            await asyncio.wait_for(rec.done.wait(), 300)
        except TimeoutError:
            pass
        latencies = [v for values in rec.latencies.values() for v in values]
        say({"done": True, "latencies": latencies, "last": last[0], "count": rec.count})
    for conn in conns:
        conn.close()


class ClientProcesses:
    """The client processes of one measurement, driven over their stdin/stdout."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(
        cls, kind: str, url: str, n: int, workers: int, token: str, channel: str
    ) -> ClientProcesses:
        counts = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__)),
                "clients",
                "--kind",
                kind,
                "--url",
                url,
                "--clients",
                str(count),
                "--token",
                token,
                "--channel",
                channel,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
                limit=2**28,
            )
            for count in counts
        ]
        return cls(procs)

    async def _read_all(self, key: str, limit_s: float) -> list[dict[str, Any]]:
        async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdout is not None
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"client process exited ({await proc.wait()})")
                message: dict[str, Any] = orjson.loads(line)
                if key in message:
                    return message

        return list(await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.procs)), limit_s))

    async def ready(self) -> None:
        await self._read_all("ready", 600)

    async def arm(self, expect: int) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps({"expect": expect}) + b"\n")
            await proc.stdin.drain()
        await self._read_all("armed", 60)

    async def results(self) -> list[dict[str, Any]]:
        return await self._read_all("done", 360)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.write(b'{"stop": true}\n')
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def measure(
    name: str,
    pid: int,
    n: int,
    start_clients: Callable[[], Awaitable[ClientProcesses]],
    publish: Callable[[bytes], Awaitable[None]],
    *,
    paced: int,
    burst: int,
) -> Result:
    await asyncio.sleep(1.0)
    base = rss_kib(pid)
    started = time.perf_counter()
    clients = await start_clients()
    try:
        await clients.ready()
        connect_s = time.perf_counter() - started
        await asyncio.sleep(2.0)
        per_conn = (rss_kib(pid) - base) / n

        await clients.arm(paced)
        for i in range(paced):
            await publish(orjson.dumps({"i": i, "t": time.time(), "pad": "x" * 200}))
            await asyncio.sleep(0.25)
        answers = await clients.results()
        latencies = [v for a in answers for v in a["latencies"]]

        await clients.arm(burst)
        t0 = time.time()
        for i in range(burst):
            await publish(orjson.dumps({"i": i, "t": time.time(), "pad": "x" * 200}))
        answers = await clients.results()
        delivered = sum(int(a["count"]) for a in answers)
        elapsed = max(float(a["last"]) for a in answers) - t0
    finally:
        await clients.stop()
    return Result(
        name,
        n,
        statistics.median(latencies) * 1000,
        pct(latencies, 0.99) * 1000,
        delivered / elapsed,
        per_conn,
        connect_s,
        delivered,
        n * burst,
    )


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), *args],
        env={**os.environ, **env},
        cwd=ROOT,
        start_new_session=True,
    )


def wait_port(port: int) -> None:
    from devstack.process import port_open, wait_until

    wait_until(lambda: port_open(port), 60, f"server on {port}")


async def run(settings: Any, n: int, paced: int, burst: int, workers: int) -> list[Result]:
    from bench.procs import serve
    from devstack.process import free_port
    from server.realtime.broker import Publication
    from server.realtime.channels import parse_channel
    from server.realtime.redis_broker import RedisBroker

    results: list[Result] = []
    bench = await make_tenant(settings)
    channel = f"project:{bench.project_id}"
    assert settings.redis_url

    hub_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="bp-fanout-") as tmp,
        serve(settings, hub_port, Path(tmp) / "serve.log") as hub,
    ):
        broker = RedisBroker(settings.redis_url, history_size=300, history_ttl=600)

        def ignore(channel: str, pub: Publication) -> None:
            return None

        async def nothing() -> None:
            return None

        await broker.start(ignore, nothing)
        key = parse_channel(channel).broker_name(bench.tenant_id)

        async def hub_publish(data: bytes) -> None:
            await broker.publish(key, data)

        url = f"ws://127.0.0.1:{hub_port}/connection/websocket"
        token = bench.tokens["investor"]
        results.append(
            await measure(
                "BuildPeer hub (buildpeer serve: Centrifugo protocol, Redis Streams + PUB/SUB)",
                hub.pid,
                n,
                lambda: ClientProcesses.start("hub", url, n, workers, token, channel),
                hub_publish,
                paced=paced,
                burst=burst,
            )
        )
        await broker.stop()

    import socketio

    sio_port = free_port()
    sio = spawn(["serve-sio", "--port", str(sio_port), "--redis", settings.redis_url], {})
    try:
        wait_port(sio_port)
        manager = socketio.AsyncRedisManager(settings.redis_url, write_only=True)

        async def sio_publish(data: bytes) -> None:
            await manager.emit("pub", orjson.loads(data), room="bench")

        url = f"ws://127.0.0.1:{sio_port}/socket.io/?EIO=4&transport=websocket"
        results.append(
            await measure(
                "python-socketio 5 + AsyncRedisManager",
                sio.pid,
                n,
                lambda: ClientProcesses.start("sio", url, n, workers, "", ""),
                sio_publish,
                paced=paced,
                burst=burst,
            )
        )
    finally:
        sio.terminate()
        sio.wait(30)
    await bench.pool.close()
    return results


def report(results: list[Result], command: str, workers: int, self_load: tuple[float, ...]) -> str:
    from importlib.metadata import version

    lines = [
        HEADING,
        "",
        f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, "
        f"python-socketio {version('python-socketio')}, uvicorn {version('uvicorn')}).",
        "",
        "One channel / room, every client subscribed. Each server in its own process: the hub is `buildpeer "
        "serve` (the whole app, one worker, uvicorn websockets-sansio), socket.io under uvicorn's defaults. "
        f"The clients are spread over {workers} client processes on uvloop, the same minimal protocol-level "
        "WebSocket client for both sides (`bench/rawws.py`: one asyncio.Protocol per connection, no task or "
        "coroutine per message, so the load generator is not what is measured); publications go through the "
        "same Redis, from this process. Latency: paced publications (one every 250 ms), publish→receive across "
        "all clients (one clock: same machine). Deliveries/s: a burst published back to back, until every "
        "client has every message (first publish → last receive). Memory: server RSS growth after all "
        f"clients connected and subscribed, per connection. Load average: {self_load[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (the machine is shared).",
        "",
        "| server | clients | p50 latency | p99 latency | deliveries/s "
        "| memory per idle connection | connect all |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.clients} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | {r.deliveries_per_s:,.0f} | "
            f"{r.kib_per_conn:.1f} KiB | {r.connect_s:.1f} s |"
        )
    lines.append("")
    for n in sorted({r.clients for r in results}):
        hub = next(r for r in results if r.clients == n and r.name.startswith("BuildPeer"))
        sio = next(r for r in results if r.clients == n and not r.name.startswith("BuildPeer"))
        lines.append(
            f"- **{n:,} clients: {hub.deliveries_per_s / sio.deliveries_per_s:.1f}x python-socketio's deliveries/s, "
            f"{hub.p99_ms / sio.p99_ms:.2f}x its p99** (p50 {hub.p50_ms / sio.p50_ms:.2f}x; memory per idle "
            f"connection {hub.kib_per_conn:.1f} vs {sio.kib_per_conn:.1f} KiB). Burst deliveries received: "
            f"{hub.delivered:,}/{hub.expected:,} and {sio.delivered:,}/{sio.expected:,}."
        )
    lines.append("")
    lines.append("Targets: ≥ 5x python-socketio's deliveries/s and ≤ 0.25x its p99 at both sizes.")
    lines.append("")
    lines.append(STEPS)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve-sio", "clients"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", default="")
    parser.add_argument(
        "--clients", default="2000,5000", help="client counts, comma-separated (one run each)"
    )
    parser.add_argument("--paced", type=int, default=20)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--client-procs", type=int, default=3, help="processes holding the clients")
    parser.add_argument("--kind", default="hub", choices=["hub", "sio"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--channel", default="", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.mode == "clients":
        run_clients(args.kind, args.url, int(args.clients), args.token, args.channel)
        return
    if args.mode == "serve-sio":
        serve_sio(args.port, args.redis)
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    load_at_start = os.getloadavg()
    with services() as settings:
        results = [
            result
            for n in (int(c) for c in args.clients.split(","))
            for result in asyncio.run(run(settings, n, args.paced, args.burst, args.client_procs))
        ]
    command = ".venv/bin/python bench/fanout.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    section = report(results, command.strip(), args.client_procs, load_at_start)
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
