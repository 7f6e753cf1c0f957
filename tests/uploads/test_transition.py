"""The one transition (core.transition) against real PostgreSQL as the application role:
forward only, one guarded UPDATE, version + 1, no two winners, tenants isolated by RLS."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import asyncpg
import pytest

from core.db import tenant_transaction
from core.status import TERMINAL, ReasonCode, UploadStatus, can_transition, rank, sources
from core.transition import Progress, record_progress, transition
from core.upload_view import UPLOAD_COLUMNS
from tests.conftest import TenantFixture
from tests.conftest import insert_upload as make_upload

S = UploadStatus


async def row_of(pool: asyncpg.Pool, t: TenantFixture, upload_id: uuid.UUID) -> asyncpg.Record:
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        row = await conn.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1", upload_id)
    assert row is not None
    return row


async def move(
    pool: asyncpg.Pool, t: TenantFixture, upload_id: uuid.UUID, to: UploadStatus, **kw: Any
) -> asyncpg.Record | None:
    async with tenant_transaction(pool, t.tenant_id) as conn:
        return await transition(conn, upload_id, to, **kw)


def test_machine_knows_deleted() -> None:
    assert S.DELETED in TERMINAL
    for status in S:
        assert can_transition(status, S.DELETED) is (status is not S.DELETED)
        assert not can_transition(S.DELETED, status)
    assert set(sources(S.DELETED)) == set(S) - {S.DELETED}
    # every allowed move raises the rank (so "never backwards" is one comparison)
    for a in S:
        for b in S:
            if can_transition(a, b):
                assert rank(b) > rank(a), (a, b)


async def test_forward_moves_bump_version_and_return_the_row(
    pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, tenant, "pending")
    v0 = (await row_of(pool, tenant, upload_id))["version"]
    expected = v0
    for status in (S.UPLOADING, S.UPLOADED, S.SCANNING, S.PROCESSING, S.READY):
        row = await move(pool, tenant, upload_id, status)
        expected += 1
        assert row is not None and row["status"] == status and row["version"] == expected
        assert set(row.keys()) == {c.strip() for c in UPLOAD_COLUMNS.split(",")}
    assert (await row_of(pool, tenant, upload_id))["version"] == v0 + 5


async def test_backwards_and_same_status_are_refused_and_change_nothing(
    pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, tenant, "processing")
    before = await row_of(pool, tenant, upload_id)
    assert await move(pool, tenant, upload_id, S.PROCESSING) is None  # same status: no-op
    for backwards in (S.PENDING, S.UPLOADING, S.UPLOADED, S.SCANNING):
        assert await move(pool, tenant, upload_id, backwards) is None
    after = await row_of(pool, tenant, upload_id)
    assert (after["status"], after["version"], after["updated_at"]) == (
        before["status"],
        before["version"],
        before["updated_at"],
    )
    ready = await move(pool, tenant, upload_id, S.READY)
    assert ready is not None
    assert await move(pool, tenant, upload_id, S.FAILED, reason=ReasonCode.CORRUPT) is None  # ready is final
    assert await move(pool, tenant, upload_id, S.QUARANTINED) is None
    deleted = await move(pool, tenant, upload_id, S.DELETED)  # ... except for deleted
    assert (
        deleted is not None and deleted["status"] == "deleted" and deleted["version"] == ready["version"] + 1
    )
    for status in S:
        assert await move(pool, tenant, upload_id, status, reason=ReasonCode.CORRUPT) is None


async def test_reason_and_counters_travel_with_the_change(pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    upload_id = await make_upload(pool, tenant, "uploading")
    with pytest.raises(ValueError):
        await move(pool, tenant, upload_id, S.FAILED)  # failed needs a reason
    uploaded = await move(
        pool,
        tenant,
        upload_id,
        S.UPLOADED,
        progress=Progress(parts_done=3, bytes_done=3000, size=3000),
        metadata={"client_sha256": "ab" * 32},
    )
    assert uploaded is not None
    assert (uploaded["parts_done"], uploaded["bytes_done"], uploaded["size_bytes"]) == (3, 3000, 3000)
    assert uploaded["metadata"]["client_sha256"] == "ab" * 32 and uploaded["reason_code"] is None
    failed = await move(pool, tenant, upload_id, S.FAILED, reason="corrupt", progress=Progress(bytes_done=10))
    assert failed is not None and failed["reason_code"] == "corrupt"
    assert failed["bytes_done"] == 3000  # counters never go backwards
    quarantined = await move(pool, tenant, upload_id, S.QUARANTINED)  # stronger than failed
    assert quarantined is not None and quarantined["reason_code"] == "infected"
    # a refused move writes none of what travels with it
    assert await move(pool, tenant, upload_id, S.READY, progress=Progress(bytes_done=9999)) is None
    assert (await row_of(pool, tenant, upload_id))["bytes_done"] == 3000


async def test_only_from_narrows_the_guard(pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    upload_id = await make_upload(pool, tenant, "uploaded")
    assert (
        await move(pool, tenant, upload_id, S.FAILED, reason="expired", only_from=(S.PENDING, S.UPLOADING))
        is None
    )
    assert (await row_of(pool, tenant, upload_id))["status"] == "uploaded"


async def test_progress_moves_counters_only(pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    upload_id = await make_upload(pool, tenant, "uploading")
    v0 = (await row_of(pool, tenant, upload_id))["version"]
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        row = await record_progress(conn, upload_id, Progress(parts_done=1, bytes_done=500))
        assert row is not None and row["status"] == "uploading" and row["version"] == v0 + 1
        assert await record_progress(conn, upload_id, Progress(bytes_done=100)) is None  # backwards: nothing
    await move(pool, tenant, upload_id, S.UPLOADED)
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        assert (
            await record_progress(conn, upload_id, Progress(bytes_done=10_000)) is None
        )  # not live any more


async def test_another_tenant_cannot_move_it(pool: asyncpg.Pool, make_tenant: Any) -> None:
    """The attack: tenant B knows tenant A's upload id and calls the transition with it."""
    a, b = await make_tenant(), await make_tenant()
    upload_id = await make_upload(pool, a, "uploading")
    before = await row_of(pool, a, upload_id)
    async with tenant_transaction(pool, b.tenant_id) as conn:
        assert await transition(conn, upload_id, S.DELETED) is None
        assert await transition(conn, upload_id, S.FAILED, reason="aborted") is None
        assert await record_progress(conn, upload_id, Progress(bytes_done=1)) is None
    after = await row_of(pool, a, upload_id)
    assert (after["status"], after["version"], after["bytes_done"]) == ("uploading", before["version"], 0)


async def test_racing_writers_one_winner_never_backwards(pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    """Twelve connections race every target at once, on many uploads: each move is won
    once at most, the winners' versions are consecutive, the winners' ranks rise in
    version order, and the final status is the winners' highest rank."""
    targets = [S.UPLOADED, S.SCANNING, S.PROCESSING, S.READY, S.UPLOADED, S.READY] * 2
    for _ in range(10):
        upload_id = await make_upload(pool, tenant, "uploading")
        v0 = (await row_of(pool, tenant, upload_id))["version"]
        gate = asyncio.Event()

        async def writer(
            to: UploadStatus, upload_id: uuid.UUID = upload_id, gate: asyncio.Event = gate
        ) -> Any:
            async with tenant_transaction(pool, tenant.tenant_id) as conn:
                await gate.wait()
                return await transition(conn, upload_id, to)

        tasks = [asyncio.create_task(writer(to)) for to in targets]
        await asyncio.sleep(0)
        gate.set()
        wins = sorted((r for r in await asyncio.gather(*tasks) if r is not None), key=lambda r: r["version"])
        statuses = [r["status"] for r in wins]
        assert len(statuses) == len(set(statuses)), statuses  # no move won twice
        assert [r["version"] for r in wins] == list(range(v0 + 1, v0 + 1 + len(wins)))
        assert all(rank(x) < rank(y) for x, y in itertools.pairwise(statuses))
        final = await row_of(pool, tenant, upload_id)
        assert final["status"] == "ready" == statuses[-1]  # the highest rank always wins in the end
        assert final["version"] == v0 + len(wins)
