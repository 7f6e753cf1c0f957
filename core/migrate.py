"""Plain SQL migrations (``core/migrations/NNNN_name.sql``), applied in order, once each.

Run as the migration owner. The runner ensures the application role exists: it logs in,
is not a superuser, cannot bypass row-level security and owns nothing; and it refuses to
run at all when the role the application connects as is a superuser or has BYPASSRLS
(row-level security would not apply to it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

import asyncpg

from core.db import APP_ROLE

log = logging.getLogger(__name__)
LOCK_KEY = 0x6275696C64706565  # "buildpee": one migrator at a time across processes


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available_migrations() -> list[Migration]:
    folder = resources.files("core") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(version, name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def ensure_app_role(conn: asyncpg.Connection, password: str | None = None) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE)
    if not exists:
        await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    if password is not None:
        await conn.execute(f"ALTER ROLE {APP_ROLE} PASSWORD {_literal(password)}")


async def check_app_roles(conn: asyncpg.Connection, roles: Iterable[str]) -> None:
    """:class:`MigrationError` when an application role would not be bound by RLS."""
    for role in sorted(set(roles)):
        row = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role)
        if row is None:
            continue  # not created yet: the app cannot log in as it either
        powers = [
            name
            for name, held in (("SUPERUSER", row["rolsuper"]), ("BYPASSRLS", row["rolbypassrls"]))
            if held
        ]
        if powers:
            raise MigrationError(
                f"application role {role} has {' and '.join(powers)}, so row-level security would not "
                "apply to it; connect the application as a plain role (BUILDPEER_DATABASE_URL) and "
                "migrate as the owner (BUILDPEER_MIGRATE_DATABASE_URL)"
            )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def migrate(dsn: str, *, app_password: str | None = None, app_roles: Iterable[str] = ()) -> list[str]:
    """Apply pending migrations; returns the versions applied. ``app_roles``: the roles the
    application connects as besides ``buildpeer_app`` (the user of its database URL)."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        await ensure_app_role(conn, app_password)
        await check_app_roles(conn, [APP_ROLE, *app_roles])
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                 version text PRIMARY KEY,
                 name text NOT NULL,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} was edited after it "
                        "was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration", extra={"migration": migration.version})
            applied_now.append(migration.version)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
