"""Row-level security, connected as the application role."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from core.db import tenant_transaction
from tests.conftest import TenantFixture


async def test_query_without_tenant_filter_sees_only_current_tenant(pool: asyncpg.Pool, make_tenant) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    async with tenant_transaction(pool, a.tenant_id) as conn:
        projects = {r["project_id"] for r in await conn.fetch("SELECT project_id FROM projects")}
        tenants = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenants")}
        users = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM users")}
    assert projects == set(a.projects)
    assert tenants == {a.tenant_id}
    assert users == {a.tenant_id}
    assert not projects & set(b.projects)


async def test_writing_a_row_for_another_tenant_is_refused(pool: asyncpg.Pool, make_tenant) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(pool, a.tenant_id) as conn:
            await conn.execute("INSERT INTO projects (tenant_id, name) VALUES ($1, 'intrusa')", b.tenant_id)
    async with tenant_transaction(pool, a.tenant_id) as conn:
        # Updating another tenant's rows finds nothing to update.
        result = await conn.execute(
            "UPDATE projects SET name = 'hijacked' WHERE project_id = $1", b.projects[0]
        )
    assert result == "UPDATE 0"


async def test_with_no_tenant_set_nothing_is_visible(pool: asyncpg.Pool, make_tenant) -> None:
    await make_tenant()
    async with pool.acquire() as conn:
        for table in ("tenants", "users", "projects", "uploads", "project_members"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_tenant_setting_does_not_leak_across_pooled_transactions(
    pool: asyncpg.Pool, make_tenant
) -> None:
    a: TenantFixture = await make_tenant()
    async with tenant_transaction(pool, a.tenant_id):
        pass
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_tenant_id()") is None


async def test_application_role_is_not_the_owner_and_cannot_bypass(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        me = await conn.fetchrow(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'uploads'")
        forced = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
            "AND relname <> 'schema_migrations' AND NOT (relrowsecurity AND relforcerowsecurity)"
        )
    assert me["rolname"] == "buildpeer_app"
    assert not me["rolsuper"] and not me["rolbypassrls"]
    assert owner != "buildpeer_app"
    assert forced == [], f"tables without forced RLS: {[r['relname'] for r in forced]}"


async def test_every_table_has_tenant_id(owner_pool: asyncpg.Pool) -> None:
    rows = await owner_pool.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
        "AND c.relname <> 'schema_migrations' AND NOT EXISTS (SELECT 1 FROM pg_attribute a "
        "WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')"
    )
    assert rows == []


async def test_app_role_cannot_read_migrations_or_alter_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE uploads DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"SET app.tenant_id = '{uuid.uuid4()}'; DROP TABLE uploads")
