"""End to end: a 12 MP JPEG uploaded to S3 → ``ready`` on a WebSocket client.

A started stack on throw-away services, each in its own process as ``buildpeer dev`` runs
them: PostgreSQL, Redis, ``moto_server`` (S3 → EventBridge → SQS, SNS → SQS), clamd,
``buildpeer serve`` (API, hub, events consumer) and ``buildpeer worker`` (the processor
Lambdas: scan, metadata, image). This process is the client: a protocol-level WebSocket
client (Centrifugo v2 JSON, as the stock SDK speaks it) subscribed to the project's channel,
and for each round ``GET /s3/params`` then the S3 POST of the photo (4000x3000, q90).

Per round: from the S3 POST answered (the object stored) to the ``ready`` publication of that
upload on the socket; also from the ``GET /s3/params`` request. Median of ``--rounds``.

    .venv/bin/python bench/e2e_ready.py [--rounds 10] [--write]

``--write`` replaces the ``## Upload to ready`` section of bench/RESULTS.md.
"""

# ruff: noqa: E501  (Markdown table templates)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import pct  # noqa: E402
from bench.procs import serve, settings_env, spawn, stop  # noqa: E402
from bench.results import write_section  # noqa: E402

HEADING = "## Upload to ready"


def photo(seed: int) -> bytes:
    """A 4000x3000 JPEG (q90) with detail everywhere (gradients + noise), like a site photo."""
    from PIL import Image, ImageFilter

    noise = Image.effect_noise((4000, 3000), 40 + seed % 7).convert("L")
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    image = Image.merge("RGB", (noise, gradient, noise.filter(ImageFilter.BoxBlur(3))))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class Watcher:
    """One WebSocket client on ``project:<id>``: the time each upload's ``ready`` arrived."""

    def __init__(self, url: str, token: str, channel: str) -> None:
        self.url, self.token, self.channel = url, token, channel
        self.ready_at: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.subscribed = asyncio.Event()

    def waiter(self, upload_id: str) -> asyncio.Event:
        return self.waiters.setdefault(upload_id, asyncio.Event())

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, max_queue=None, ping_interval=None, compression=None) as ws:
            await ws.send(
                orjson.dumps({"id": 1, "connect": {"token": self.token}}).decode()
                + "\n"
                + orjson.dumps({"id": 2, "subscribe": {"channel": self.channel}}).decode()
            )
            async for frame in ws:
                now = time.perf_counter()
                for line in str(frame).split("\n"):
                    message = orjson.loads(line)
                    if not message:
                        await ws.send("{}")  # pong
                    elif "push" in message:
                        data = message["push"].get("pub", {}).get("data", {})
                        upload = data.get("upload") or {}
                        upload_id = str(data.get("upload_id") or upload.get("id"))
                        status = upload.get("status") or data.get("status")
                        if status == "ready" and upload_id not in self.ready_at:
                            self.ready_at[upload_id] = now
                            self.waiter(upload_id).set()
                        elif status in ("failed", "quarantined"):
                            raise RuntimeError(f"upload {upload_id} {status}: {data}")
                    elif message.get("id") == 2:
                        if "error" in message:
                            raise RuntimeError(message)
                        self.subscribed.set()


async def rounds(base: str, ws_url: str, stack: Any, count: int) -> list[tuple[float, float, int]]:
    import httpx

    token = stack.tokens["field_worker"]
    auth = {"Authorization": f"Bearer {token}"}
    watcher = Watcher(ws_url, token, f"project:{stack.project_id}")
    watching = asyncio.create_task(watcher.run())
    results = []
    try:
        await asyncio.wait_for(watcher.subscribed.wait(), 30)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for n in range(-1, count):  # round -1 warms the worker's imports and clients
                body = await asyncio.to_thread(photo, n)
                began = time.perf_counter()
                params = await http.get(
                    "/s3/params",
                    params={
                        "filename": f"obra-{n}.jpg",
                        "type": "image/jpeg",
                        "metadata[projectId]": str(stack.project_id),
                        "size": str(len(body)),
                    },
                    headers=auth,
                )
                params.raise_for_status()
                signed = params.json()
                upload_id = str(signed["id"])
                done = watcher.waiter(upload_id)
                put = await http.post(
                    signed["url"],
                    data=signed["fields"],
                    files={"file": (f"obra-{n}.jpg", body, "image/jpeg")},
                )
                assert put.status_code in (200, 201, 204), put.text
                stored = time.perf_counter()
                waiting = asyncio.ensure_future(done.wait())
                finished, _ = await asyncio.wait(
                    {waiting, watching}, timeout=120, return_when=asyncio.FIRST_COMPLETED
                )
                if watching in finished:
                    watching.result()  # raises why the client stopped
                if waiting not in finished:
                    raise TimeoutError(f"upload {upload_id} not ready within 120 s")
                ready = watcher.ready_at[upload_id]
                if n >= 0:
                    results.append((ready - stored, ready - began, len(body)))
                    print(
                        f"  round {n + 1}: ready {1000 * (ready - stored):.0f} ms after the S3 POST ({len(body) / 1e6:.1f} MB)",
                        flush=True,
                    )
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return results


@contextlib.contextmanager
def started_stack(tmp: Path) -> Iterator[tuple[Any, Any]]:
    from bench.soak import moto_process
    from devstack.aws import provision
    from devstack.clamd import EmbeddedClamd
    from devstack.ephemeral import ephemeral_services
    from devstack.process import free_port

    with (
        ephemeral_services(
            tmp,
            jwt_secret="ready-secret-0123456789abcdef-0123456789",
            stack="bpready",
            bucket="bpready-uploads",
            rate_limit_ip_per_minute=0,
            rate_limit_tenant_per_minute=0,
        ) as services,
        moto_process(tmp) as moto_url,
    ):
        clamd = EmbeddedClamd(tmp / "clamd", port=free_port())
        clamd.start()
        try:
            settings = services.settings.replace(aws_endpoint_url=moto_url, clamd_url=clamd.url)
            provision(settings)
            yield settings, clamd
        finally:
            clamd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    from bench.presign import make_tenant
    from devstack.process import free_port

    with tempfile.TemporaryDirectory(prefix="bp-ready-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        with started_stack(tmp) as (settings, clamd):

            async def prepare() -> Any:
                made = await make_tenant(settings)
                await made.pool.close()
                return made

            stack = asyncio.run(prepare())
            port = free_port()
            worker = spawn(
                [sys.executable, "-m", "cli.main", "worker"],
                settings_env(settings.replace(log_level="WARNING")),
                tmp / "worker.log",
            )
            try:
                with serve(
                    settings, port, tmp / "server.log", events_consumer_enabled=True, events_wait_seconds=20
                ):
                    results = asyncio.run(
                        rounds(
                            f"http://127.0.0.1:{port}",
                            f"ws://127.0.0.1:{port}/connection/websocket",
                            stack,
                            args.rounds,
                        )
                    )
            finally:
                stop(worker)
            signatures = clamd.database
    after = [r[0] for r in results]
    total = [r[1] for r in results]
    command = ".venv/bin/python bench/e2e_ready.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
    size = statistics.median(r[2] for r in results) / 1e6
    section = f"""{HEADING}

Command: `{command.strip()}` ({platform.machine()}, {os.cpu_count()} CPUs shared by every process of the stack; Python
{platform.python_version()}; load average at the end {os.getloadavg()[0]:.1f}).

A started stack, each part in its own process: PostgreSQL, Redis, `moto_server` (S3 → EventBridge → SQS, SNS → SQS),
clamd ({signatures}), `buildpeer serve` (API, hub, events consumer) and `buildpeer worker` (scan, metadata, image:
both thumbnails, EXIF). The client: `GET /s3/params`, the S3 POST of a 4000x3000 JPEG (q90, {size:.1f} MB), and a
WebSocket client on the project's channel that notes the `ready` publication. {len(results)} rounds after one warm-up.

| from | median | p90 | min | max |
|---|---|---|---|---|
| S3 POST answered → `ready` on the socket | **{statistics.median(after) * 1000:.0f} ms** | {pct(after, 0.9) * 1000:.0f} ms | {min(after) * 1000:.0f} ms | {max(after) * 1000:.0f} ms |
| `GET /s3/params` sent → `ready` on the socket | {statistics.median(total) * 1000:.0f} ms | {pct(total, 0.9) * 1000:.0f} ms | {min(total) * 1000:.0f} ms | {max(total) * 1000:.0f} ms |

Target: < 2 s from the upload to `ready`.
"""
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
