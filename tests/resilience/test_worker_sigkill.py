"""A worker killed with SIGKILL mid-processing (issue 8).

``buildpeer worker`` runs as a subprocess on an isolated stack whose processor queues have
a short visibility timeout. clamd sits behind a TCP proxy that is stalled, so the scan of
a photo hangs mid-stream with its step ``running``; the worker is killed right there. A
new worker takes the message when it comes back after its visibility timeout, and the
upload ends ``ready`` with the work applied once: one set of derivatives, one
``processing.completed`` event, every step done once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import pytest

from core.events import EventType
from devstack.clamd import EmbeddedClamd
from devstack.process import ManagedProcess
from tests.conftest import Stack, TenantFixture
from tests.pipeline import samples
from tests.pipeline.helpers import (
    create_upload,
    derivatives,
    derived_keys,
    isolated_stack,
    settled_steps,
    steps,
    wait_status,
)
from tests.realtime.conftest import settings_env
from tests.resilience.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY = 6


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Any]:
    """``start(settings)`` → a running ``buildpeer worker`` subprocess; all stopped at the end."""
    procs: list[ManagedProcess] = []

    def start(settings: Any) -> ManagedProcess:
        proc = ManagedProcess(
            f"worker-{len(procs)}",
            [sys.executable, "-m", "cli.main", "worker"],
            log_path=tmp_path / f"worker-{len(procs)}.log",
            env={**os.environ, **settings_env(settings)},
            cwd=ROOT,
        )
        proc.start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


async def test_message_of_a_killed_worker_comes_back_and_is_applied_once(
    stack: Stack, clamd: EmbeddedClamd, pool: asyncpg.Pool, tenant: TenantFixture, worker_process: Any
) -> None:
    target = urlparse(clamd.url)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 3310)).start()
    try:
        proxy.stall()  # clamd accepts the stream and never answers, as a hung scan would
        p = await asyncio.to_thread(
            isolated_stack,
            stack,
            "bpfault-wk",
            clamd_url=f"tcp://127.0.0.1:{proxy.port}",
            visibility=VISIBILITY,
        )
        first = worker_process(p.settings)
        ref = await create_upload(
            pool,
            p,
            tenant,
            file_name="foto.jpg",
            declared_type="image/jpeg",
            data=samples.rotated_jpeg_with_gps(),
        )
        deadline = time.monotonic() + 30
        # The step is claimed, and its stream is on its way to clamd.
        while (
            (scan := (await steps(pool, ref)).get("scan")) is None
            or scan["state"] != "running"
            or (proxy.accepted < 1)
        ):
            first.check_alive()
            assert time.monotonic() < deadline, "the scan never started"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(first.kill)  # SIGKILL mid-scan
        assert scan["attempts"] == 1
        proxy.forward()

        worker_process(p.settings)
        row = await wait_status(pool, ref, final={"ready", "failed", "quarantined"}, within=45)
        assert (row["status"], row["reason_code"]) == ("ready", None)

        done = await settled_steps(pool, ref)
        assert {name: s["state"] for name, s in done.items()} == {
            "scan": "done",
            "metadata": "done",
            "image": "done",
            "document": "skipped",
        }
        assert done["scan"]["attempts"] == 2  # the killed one, then the one that finished
        assert done["scan"]["result"]["clean"] is True
        assert set(await derivatives(pool, ref)) == {"thumb-200", "thumb-800"}
        assert [k.rsplit("/", 1)[-1] for k in derived_keys(p, ref)] == ["thumb-200.jpg", "thumb-800.jpg"]
        events = await p.events.for_upload(ref.upload_id, until={"processing.completed"})
        completed = [e for e in events if e.type == EventType.PROCESSING_COMPLETED]
        assert len(completed) == 1 and completed[0].status.value == "ready"
        assert not [e for e in events if e.type == EventType.UPLOAD_FAILED]
    finally:
        proxy.close()
