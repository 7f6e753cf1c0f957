"""The database side of tenant isolation: SECURITY DEFINER functions cannot be steered by the
caller's search_path, and ``buildpeer migrate`` refuses an application role that RLS would
not bind (superuser, BYPASSRLS)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Stack, TenantFixture


async def test_every_security_definer_function_pins_its_search_path(owner_pool: asyncpg.Pool) -> None:
    rows = await owner_pool.fetch(
        """SELECT p.oid::regprocedure::text AS name, p.proconfig
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')"""
    )
    names = {r["name"] for r in rows}
    assert {"all_tenant_ids()", "project_tenant_id(uuid)"} <= names
    wrong = {r["name"]: r["proconfig"] for r in rows if r["proconfig"] != ["search_path=pg_catalog, public"]}
    assert wrong == {}


async def test_a_temp_table_cannot_stand_in_for_a_definer_functions_table(
    pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """The application role shadows ``projects`` with a temporary table of its own making:
    the owner-rights function still reads the real one."""
    fake_project, fake_tenant = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE projects (project_id uuid, tenant_id uuid) ON COMMIT DROP")
        await conn.execute("INSERT INTO projects VALUES ($1, $2)", fake_project, fake_tenant)
        await conn.execute("SET LOCAL search_path = pg_temp, public")
        assert await conn.fetchval("SELECT public.project_tenant_id($1)", fake_project) is None
        real = await conn.fetchval("SELECT public.project_tenant_id($1)", tenant.projects[0])
        assert real == tenant.tenant_id
        assert tenant.tenant_id in await conn.fetchval("SELECT array(SELECT all_tenant_ids())")


def _migrate(stack: Stack, app_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDPEER_")}
    env.update(BUILDPEER_MIGRATE_DATABASE_URL=stack.pg.owner_url, BUILDPEER_DATABASE_URL=app_url)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize("power", ["SUPERUSER", "BYPASSRLS"])
async def test_migrate_refuses_an_app_role_that_rls_would_not_bind(
    stack: Stack, owner_pool: asyncpg.Pool, tmp_path: Path, power: str
) -> None:
    role = f"bp_app_{power.lower()}_{uuid.uuid4().hex[:8]}"
    await owner_pool.execute(f"CREATE ROLE {role} LOGIN {power}")
    try:
        url = stack.pg.app_url().replace("buildpeer_app@", f"{role}@")
        result = _migrate(stack, url, tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert role in lines[0] and power in lines[0] and "row-level security" in lines[0]
    finally:
        await owner_pool.execute(f"DROP ROLE {role}")


async def test_migrate_accepts_the_plain_app_role(stack: Stack, tmp_path: Path) -> None:
    result = _migrate(stack, stack.pg.app_url(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "applied 0 migration(s)" in result.stdout
