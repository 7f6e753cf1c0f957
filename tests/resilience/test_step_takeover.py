"""Claiming a step that is still ``running``: another message is told to wait; the same
SQS message (handed out again only after its visibility timeout ran out) takes over."""

from __future__ import annotations

import uuid

import asyncpg
import orjson
import pytest

from core.db import tenant_transaction
from processors.common import store
from processors.common.s3event import object_ref
from tests.conftest import TenantFixture, insert_upload


async def test_only_the_message_that_claimed_a_running_step_takes_it_over(
    pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    upload_id = await insert_upload(pool, tenant)
    key = f"tenant-{tenant.tenant_id}/project-{tenant.projects[0]}/uploads/{upload_id}/original/plano.pdf"
    body = orjson.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {
                "bucket": {"name": "any"},
                "object": {"key": key, "size": 1234, "etag": "abc", "sequencer": "01"},
            },
        }
    ).decode()
    ref = object_ref(body)
    assert ref is not None

    first = await store.claim(pool, ref, "metadata", in_progress_seconds=300, delivery="message-1")
    assert first.kind == "run"
    # An EventBridge duplicate (another message) while the first is working: wait.
    with pytest.raises(store.StepInProgress):
        await store.claim(pool, ref, "metadata", in_progress_seconds=300, delivery="message-2")
    with pytest.raises(store.StepInProgress):
        await store.claim(pool, ref, "metadata", in_progress_seconds=300)
    # The first message again: the receive that claimed the step is gone.
    again = await store.claim(pool, ref, "metadata", in_progress_seconds=300, delivery="message-1")
    assert again.kind == "run"
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        step = await conn.fetchrow(
            "SELECT state, attempts FROM processing_steps WHERE upload_id = $1 AND processor = 'metadata'",
            upload_id,
        )
    assert (step["state"], step["attempts"]) == ("running", 2)
