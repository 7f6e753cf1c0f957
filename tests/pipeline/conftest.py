"""Pipeline fixtures: a real clamd, isolated stacks (own bucket, queues, topics) provisioned
into the session's moto server, and a running worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from server.devstack.clamd import EmbeddedClamd
from server.devstack.process import free_port
from server.worker import Worker
from tests.conftest import Stack
from tests.pipeline.helpers import PipelineStack, isolated_stack


@pytest.fixture(scope="session")
def clamd(stack: Stack) -> Iterator[EmbeddedClamd]:
    server = EmbeddedClamd(stack.base_dir / "clamd", port=free_port(), max_bytes=64 * 1024 * 1024)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def pipeline(stack: Stack, clamd: EmbeddedClamd) -> AsyncIterator[PipelineStack]:
    """Stack ``bppipe`` with a worker running for the whole session."""
    p = await asyncio.to_thread(isolated_stack, stack, "bppipe", clamd_url=clamd.url)
    worker = Worker(p.settings, poll_wait_seconds=1, sweep_interval_seconds=3600, drain_seconds=30)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.started.wait(), 60)
    p.worker = worker
    yield p
    stop.set()
    await asyncio.wait_for(task, 90)
