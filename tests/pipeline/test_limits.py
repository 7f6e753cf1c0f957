"""Parser limits end to end: a worker whose document limits are shortened (settings), a PDF
whose OCR runs past them fails with ``too_complex`` within the limit, and the same worker
goes on to process the next PDF (the slow one held no worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from devstack.clamd import EmbeddedClamd
from tests.conftest import Stack, TenantFixture, running_worker
from tests.pipeline import samples
from tests.pipeline.helpers import (
    PipelineStack,
    create_upload,
    derivatives,
    isolated_stack,
    steps,
    wait_status,
)

FINAL = {"ready", "failed", "quarantined"}
PAGE_SECONDS = 1.0


@pytest.fixture
async def short_limits(stack: Stack, clamd: EmbeddedClamd) -> AsyncIterator[PipelineStack]:
    p = await asyncio.to_thread(isolated_stack, stack, "bplimits", clamd_url=clamd.url)
    p.settings = p.settings.replace(
        document_page_seconds=PAGE_SECONDS, document_file_seconds=20.0, worker_concurrency=1
    )
    async with running_worker(p.settings) as worker:
        p.worker = worker
        yield p


async def test_pdf_whose_ocr_runs_past_the_page_limit_fails_and_frees_the_worker(
    short_limits: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    slow = await create_upload(
        pool,
        short_limits,
        tenant,
        file_name="escaneo-ruido.pdf",
        declared_type="application/pdf",
        data=samples.noisy_scanned_pdf(pages=3),
    )
    row = await wait_status(pool, slow, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "too_complex")
    document = (await steps(pool, slow))["document"]
    assert document["state"] == "failed"
    assert f"limit of {PAGE_SECONDS:g} s" in document["result"]["error"]
    assert "page 1" in document["result"]["error"], "it stopped at the first page past the limit"
    assert await derivatives(pool, slow) == {}

    # the next PDF, through the same one-at-a-time worker and the same limits, is ready
    normal = await create_upload(
        pool,
        short_limits,
        tenant,
        file_name="acta.pdf",
        declared_type="application/pdf",
        data=samples.text_layer_pdf(),
    )
    row = await wait_status(pool, normal, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    assert row["metadata"]["text_source"] == "text_layer"
