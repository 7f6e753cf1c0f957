"""Presign benchmark: batch signing of 100 parts through ``GET /s3/multipart/{id}/batch``
(auth, tenant lookup in PostgreSQL, status write-through, signing) against raw botocore
``generate_presigned_url`` for the same 100 parts, in the same run; plus p50/p99 latency of
a single-part signing request. The route is driven over HTTP on loopback from this process
against ``buildpeer serve`` in its own process (so the route's figure includes one HTTP round
trip; raw botocore has none); embedded PostgreSQL + Redis + moto, as ``buildpeer dev`` runs them.

    .venv/bin/python bench/presign.py [--rounds 200] [--write]

``--write`` replaces the ``## Presign`` section of bench/RESULTS.md.
"""

# ruff: noqa: E501  (Markdown table templates)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import pct  # noqa: E402
from bench.results import write_section  # noqa: E402

HEADING = "## Presign"


@dataclass
class BenchStack:
    settings: Any
    pool: Any
    tenant_id: Any
    project_id: Any
    tokens: dict[str, str]


@contextlib.contextmanager
def services() -> Iterator[Any]:
    from devstack.ephemeral import ephemeral_services

    with tempfile.TemporaryDirectory(prefix="bp-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with ephemeral_services(
            Path(tmp),
            jwt_secret="bench-secret-0123456789abcdef-0123456789",
            stack="bpbench",
            bucket="bpbench-uploads",
            rate_limit_ip_per_minute=0,
            rate_limit_tenant_per_minute=0,
            events_consumer_enabled=False,
        ) as running:
            yield running.settings


async def make_tenant(settings: Any) -> BenchStack:
    import uuid

    from core.db import create_pool
    from server import admin
    from server.auth import mint_token

    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    tenant = await admin.create_tenant(pool, "Bench")
    tid = uuid.UUID(tenant["tenant_id"])
    project = uuid.UUID((await admin.create_project(pool, tid, "Obra"))["project_id"])
    tokens = {}
    for role in ("admin", "field_worker", "investor"):
        user = await admin.create_user(pool, tid, f"{role}@bench.example", role)
        await admin.add_member(pool, project, user["user_id"])
        tokens[role] = mint_token(
            settings, user_id=user["user_id"], tenant_id=tid, role=role, ttl_seconds=86400
        )
    return BenchStack(settings, pool, tid, project, tokens)


@contextlib.asynccontextmanager
async def served_client(settings: Any) -> AsyncIterator[Any]:
    """``buildpeer serve`` in its own process on a loopback port, and an HTTP client for it."""
    import httpx

    from bench.procs import serve
    from devstack.process import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bp-presign-") as tmp:
        with serve(settings, port, Path(tmp) / "serve.log"):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield client


async def run(settings: Any, rounds: int) -> dict[str, Any]:
    from server.uploads.presign import Presigner

    stack = await make_tenant(settings)
    headers = {"Authorization": f"Bearer {stack.tokens['field_worker']}"}
    numbers = ",".join(str(n) for n in range(1, 101))
    raw = Presigner(settings)  # the same botocore client configuration, outside any route
    async with served_client(settings) as client:
        created = await client.post(
            "/s3/multipart",
            json={
                "filename": "big.mp4",
                "type": "video/mp4",
                "size": 2 * 1024**3,
                "metadata": {"projectId": str(stack.project_id)},
            },
            headers=headers,
        )
        body = created.json()
        key, upload_id = body["key"], body["uploadId"]
        each = int(body["partSize"])  # 2 GiB declared: every one of parts 1..100 is this long
        batch_url = f"/s3/multipart/{upload_id}/batch"
        part_url = f"/s3/multipart/{upload_id}/7"
        # warm-up
        for _ in range(20):
            assert (
                await client.get(batch_url, params={"key": key, "partNumbers": numbers}, headers=headers)
            ).status_code == 200
            raw.upload_parts(key, upload_id, list(range(1, 101)))
            await client.get(part_url, params={"key": key}, headers=headers)
        route_times, raw_times, single_times = [], [], []
        for _ in range(rounds):  # interleaved, so drift hits both sides alike
            t0 = time.perf_counter()
            r = await client.get(batch_url, params={"key": key, "partNumbers": numbers}, headers=headers)
            t1 = time.perf_counter()
            assert r.status_code == 200 and len(r.json()["presignedUrls"]) == 100
            raw.client.generate_presigned_url  # noqa: B018 - same attribute lookups as below
            t2 = time.perf_counter()
            for n in range(1, 101):
                raw.client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": settings.bucket,
                        "Key": key,
                        "UploadId": upload_id,
                        "PartNumber": n,
                        "ContentLength": each,  # the route signs the declared part length too
                    },
                    ExpiresIn=settings.presign_expiry_seconds,
                    HttpMethod="PUT",
                )
            t3 = time.perf_counter()
            route_times.append(t1 - t0)
            raw_times.append(t3 - t2)
            t4 = time.perf_counter()
            r = await client.get(part_url, params={"key": key}, headers=headers)
            single_times.append(time.perf_counter() - t4)
            assert r.status_code == 200
    await stack.pool.close()
    route, rawm = statistics.median(route_times), statistics.median(raw_times)
    return {
        "rounds": rounds,
        "route_median_ms": route * 1000,
        "route_min_ms": min(route_times) * 1000,
        "raw_median_ms": rawm * 1000,
        "raw_min_ms": min(raw_times) * 1000,
        "ratio": route / rawm,
        "single_p50_ms": pct(single_times, 0.5) * 1000,
        "single_p99_ms": pct(single_times, 0.99) * 1000,
    }


def render(r: dict[str, Any], command: str) -> str:
    return f"""{HEADING}

Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}); HTTP over
loopback to `buildpeer serve --workers 1` in its own process (the route's time includes that round trip), embedded PostgreSQL + Redis + moto; median of {r["rounds"]} interleaved rounds.

| what | median | min |
|---|---|---|
| `GET /s3/multipart/{{id}}/batch?partNumbers=1..100` (JWT, tenant transaction + row lock, write-through, 100 SigV4 URLs) | {r["route_median_ms"]:.2f} ms | {r["route_min_ms"]:.2f} ms |
| raw botocore `generate_presigned_url("upload_part")` x100, same client config | {r["raw_median_ms"]:.2f} ms | {r["raw_min_ms"]:.2f} ms |

**Ratio route / raw botocore: {r["ratio"]:.2f}x** (target ≤ 1.20x).

Single-part signing request `GET /s3/multipart/{{id}}/{{n}}`: p50 {r["single_p50_ms"]:.2f} ms, p99 {r["single_p99_ms"]:.2f} ms.
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    with services() as settings:
        result = asyncio.run(run(settings, args.rounds))
    command = (
        ".venv/bin/python bench/presign.py"
        + (f" --rounds {args.rounds}" if args.rounds != 200 else "")
        + " --write"
    )
    section = render(result, command)
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
