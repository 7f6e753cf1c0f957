"""``core.db.plain_tenant_transaction`` (the events consumer's transaction, two round trips
fewer): the same tenant scope and commit/rollback as ``tenant_transaction``, and a pooled
connection that carries nothing into its next use — against real PostgreSQL as the app role,
on a pool of one connection (every use below gets the same connection)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core.db import create_pool, plain_tenant_transaction, tenant_transaction
from tests.conftest import Stack, TenantFixture


@pytest.fixture
async def one(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    assert stack.settings.database_url
    p = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    yield p
    await p.close()


async def project_names(pool: asyncpg.Pool, t: TenantFixture) -> set[str]:
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        return {r["name"] for r in await conn.fetch("SELECT name FROM projects")}


async def test_scoped_to_the_tenant_and_committed(one: asyncpg.Pool, make_tenant: Any) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    async with plain_tenant_transaction(one, a.tenant_id) as conn:
        seen = {r["project_id"] for r in await conn.fetch("SELECT project_id FROM projects")}
        await conn.execute("INSERT INTO projects (tenant_id, name) VALUES ($1, 'plain')", a.tenant_id)
    assert seen == set(a.projects) and not seen & set(b.projects)
    assert "plain" in await project_names(one, a)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with plain_tenant_transaction(one, a.tenant_id) as conn:
            await conn.execute("INSERT INTO projects (tenant_id, name) VALUES ($1, 'intrusa')", b.tenant_id)
    assert "intrusa" not in await project_names(one, b)


async def test_an_error_rolls_back_and_the_connection_comes_back_clean(
    one: asyncpg.Pool, tenant: TenantFixture
) -> None:
    name = f"rolled-back-{uuid.uuid4()}"
    with pytest.raises(RuntimeError):
        async with plain_tenant_transaction(one, tenant.tenant_id) as conn:
            await conn.execute(
                "INSERT INTO projects (tenant_id, name) VALUES ($1, $2)", tenant.tenant_id, name
            )
            raise RuntimeError("after the write")
    assert name not in await project_names(one, tenant)
    async with one.acquire() as conn:  # the same connection: no transaction, no tenant
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")


async def test_session_state_of_other_users_is_still_reset(one: asyncpg.Pool, tenant: TenantFixture) -> None:
    async with plain_tenant_transaction(one, tenant.tenant_id) as conn:
        await conn.fetchval("SELECT 1")
    async with one.acquire() as conn:  # a user that leaves session state behind
        await conn.execute("SET application_name = 'left-behind'")
    async with one.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") != "left-behind"
