"""``core.transition.may_move`` answers what the guarded UPDATE of ``transition`` does, for
every pair of statuses, against real PostgreSQL (the events consumer skips the UPDATE when it
answers no on a row it holds locked)."""

from __future__ import annotations

import asyncpg

from core.db import tenant_transaction
from core.status import ReasonCode, UploadStatus
from core.transition import may_move, transition
from tests.conftest import TenantFixture
from tests.conftest import insert_upload as make_upload


async def test_may_move_is_the_guard_of_the_update(pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    answers = []
    for current in UploadStatus:
        for to in UploadStatus:
            upload_id = await make_upload(pool, tenant, current.value)
            async with tenant_transaction(pool, tenant.tenant_id) as conn:
                moved = await transition(conn, upload_id, to, reason=ReasonCode.PROCESSING_FAILED)
            answers.append((current, to, moved is not None, may_move(current, to)))
    assert [a for a in answers if a[2] != a[3]] == []
    assert any(a[2] for a in answers) and not all(a[2] for a in answers)
