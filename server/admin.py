"""Administration: tenants, users, projects and memberships (the admin CLI and tests).

All writes go through tenant transactions as the application role, so row-level security
checks them like any other write.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from core.auth import Role
from core.db import tenant_transaction
from core.settings import LOCALES

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")


class AdminError(ValueError):
    pass


class AccessNotifier(Protocol):
    """Told after a user may hold less than before (left a project, a lower role), so
    every real-time server ends the subscriptions the user may no longer hold
    (``server.realtime.control.ControlPublisher`` sends it through the broker)."""

    async def access_changed(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None: ...


def _check_timezone(tz: str | None) -> None:
    if tz is None:
        return
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise AdminError(f"unknown time zone {tz!r}") from None


def _check_locale(locale: str | None) -> None:
    if locale is not None and locale not in LOCALES:
        raise AdminError(f"locale must be one of {', '.join(LOCALES)}")


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AdminError("name must have 1 to 200 characters")
    return name


async def create_tenant(
    pool: asyncpg.Pool, name: str, *, timezone: str = "America/Mexico_City", locale: str = "es"
) -> dict[str, Any]:
    _check_timezone(timezone)
    _check_locale(locale)
    tenant_id = uuid.uuid4()
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            "INSERT INTO tenants (tenant_id, name, timezone, locale) VALUES ($1, $2, $3, $4) "
            "RETURNING tenant_id, name, timezone, locale",
            tenant_id,
            _check_name(name),
            timezone,
            locale,
        )
    return _plain(row)


async def create_user(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID | str,
    email: str,
    role: str,
    *,
    timezone: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    if not _EMAIL.match(email):
        raise AdminError(f"invalid email {email!r}")
    try:
        Role(role)
    except ValueError:
        raise AdminError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    _check_timezone(timezone)
    _check_locale(locale)
    async with tenant_transaction(pool, tenant_id) as conn:
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", uuid.UUID(str(tenant_id))):
            raise AdminError(f"tenant {tenant_id} not found")
        try:
            row = await conn.fetchrow(
                "INSERT INTO users (tenant_id, email, role, timezone, locale) VALUES ($1, $2, $3, $4, $5) "
                "RETURNING user_id, tenant_id, email, role, timezone, locale",
                uuid.UUID(str(tenant_id)),
                email.lower(),
                role,
                timezone,
                locale,
            )
        except asyncpg.UniqueViolationError:
            raise AdminError(f"a user with email {email!r} already exists in this tenant") from None
    return _plain(row)


async def create_project(pool: asyncpg.Pool, tenant_id: uuid.UUID | str, name: str) -> dict[str, Any]:
    async with tenant_transaction(pool, tenant_id) as conn:
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", uuid.UUID(str(tenant_id))):
            raise AdminError(f"tenant {tenant_id} not found")
        row = await conn.fetchrow(
            "INSERT INTO projects (tenant_id, name) VALUES ($1, $2) RETURNING project_id, tenant_id, name",
            uuid.UUID(str(tenant_id)),
            _check_name(name),
        )
    return _plain(row)


async def add_member(
    pool: asyncpg.Pool, project_id: uuid.UUID | str, user_id: uuid.UUID | str
) -> dict[str, Any]:
    project = uuid.UUID(str(project_id))
    tenant_id = await pool.fetchval("SELECT project_tenant_id($1)", project)
    if tenant_id is None:
        raise AdminError(f"project {project_id} not found")
    async with tenant_transaction(pool, tenant_id) as conn:
        user = uuid.UUID(str(user_id))
        if not await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user):
            raise AdminError(f"user {user_id} not found in the project's tenant")
        await conn.execute(
            "INSERT INTO project_members (tenant_id, project_id, user_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            tenant_id,
            project,
            user,
        )
    return {"project_id": str(project), "user_id": str(user), "tenant_id": str(tenant_id)}


async def remove_member(
    pool: asyncpg.Pool,
    project_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    *,
    notify: AccessNotifier | None,
) -> dict[str, Any]:
    """Take the user off the project; ``notify`` then ends their ``project:`` and
    ``upload:`` subscriptions of it on every server (``None``: nobody is listening)."""
    project = uuid.UUID(str(project_id))
    tenant_id = await pool.fetchval("SELECT project_tenant_id($1)", project)
    if tenant_id is None:
        raise AdminError(f"project {project_id} not found")
    user = uuid.UUID(str(user_id))
    async with tenant_transaction(pool, tenant_id) as conn:
        removed = await conn.fetchval(
            "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2 RETURNING user_id",
            project,
            user,
        )
    if removed is None:
        raise AdminError(f"user {user_id} is not a member of project {project_id}")
    if notify is not None:
        await notify.access_changed(tenant_id, user)
    return {"project_id": str(project), "user_id": str(user), "tenant_id": str(tenant_id)}


async def set_role(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    role: str,
    *,
    notify: AccessNotifier | None,
) -> dict[str, Any]:
    """Change the user's role; ``notify`` then ends, on every server, the subscriptions
    the new role may not hold (tokens carrying the old role are checked against it)."""
    try:
        Role(role)
    except ValueError:
        raise AdminError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    tenant = uuid.UUID(str(tenant_id))
    async with tenant_transaction(pool, tenant) as conn:
        row = await conn.fetchrow(
            "UPDATE users SET role = $2 WHERE user_id = $1 "
            "RETURNING user_id, tenant_id, email, role, timezone, locale",
            uuid.UUID(str(user_id)),
            role,
        )
    if row is None:
        raise AdminError(f"user {user_id} not found in tenant {tenant_id}")
    if notify is not None:
        await notify.access_changed(tenant, row["user_id"])
    return _plain(row)


def _plain(row: asyncpg.Record | None) -> dict[str, Any]:
    assert row is not None
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in dict(row).items()}
