"""Pipeline fixtures: an isolated stack (own bucket, queues, topics) provisioned into the
session's moto server, with a worker running for the whole session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from devstack.clamd import EmbeddedClamd
from tests.conftest import Stack, running_worker
from tests.pipeline.helpers import PipelineStack, isolated_stack


@pytest.fixture(scope="session")
async def pipeline(stack: Stack, clamd: EmbeddedClamd) -> AsyncIterator[PipelineStack]:
    """Stack ``bppipe`` with a worker running for the whole session."""
    p = await asyncio.to_thread(isolated_stack, stack, "bppipe", clamd_url=clamd.url)
    async with running_worker(p.settings) as worker:
        p.worker = worker
        yield p
