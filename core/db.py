"""PostgreSQL access: an asyncpg pool and tenant-scoped transactions.

Row-level security keys on ``app.tenant_id``, set with ``set_config(..., true)`` so it
lives exactly as long as the transaction: a pooled connection never carries one
tenant's setting into another's work.

:func:`plain_tenant_transaction` is the same transaction in two round trips fewer, for hot
paths that run only plain statements in it (the events consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson

from core.errors import DatabaseUnavailable, as_transient

APP_ROLE = "buildpeer_app"
PING_TIMEOUT = 2.0

__all__ = [
    "APP_ROLE",
    "DatabaseUnavailable",
    "all_tenant_ids",
    "create_pool",
    "ping",
    "plain_tenant_transaction",
    "record_to_dict",
    "tenant_transaction",
]


def _unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` a driver or socket error stands for, if any."""
    if isinstance(exc, OSError):  # refused, reset, timed out: PostgreSQL is not answering
        return DatabaseUnavailable(f"{type(exc).__name__}: {exc}")
    translated = as_transient(exc)
    return translated if isinstance(translated, DatabaseUnavailable) else None


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class _Connection(asyncpg.Connection):
    """A pooled connection that can skip asyncpg's reset query (``pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL``, one round trip) on its next release, when its user
    left no session state (:func:`plain_tenant_transaction`). An open transaction is still
    rolled back on release."""

    __slots__ = ("_session_clean",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_clean = False

    def session_clean(self) -> None:
        """Nothing this user did outlives its transaction: no reset query on release."""
        self._session_clean = True

    def get_reset_query(self) -> str:
        if self._session_clean:
            self._session_clean = False
            return ""
        query: str = super().get_reset_query()
        return query


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 20) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connection_class=_Connection,
            init=_init_connection,
            command_timeout=30,
            max_inactive_connection_lifetime=300,
        )
    except (OSError, asyncpg.PostgresError) as exc:  # any failure to open the pool
        raise DatabaseUnavailable(str(exc)) from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, tenant_id: uuid.UUID | str, *, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which only ``tenant_id``'s rows exist."""
    tenant = str(uuid.UUID(str(tenant_id)))
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=readonly):
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
            yield conn
    except Exception as exc:
        unavailable = _unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc


@asynccontextmanager
async def plain_tenant_transaction(
    pool: asyncpg.Pool, tenant_id: uuid.UUID | str
) -> AsyncIterator[asyncpg.Connection]:
    """:func:`tenant_transaction` (read-write) in two round trips fewer: ``BEGIN`` and the
    tenant setting go in one simple query, and the connection returns to the pool without
    asyncpg's reset query. Only for plain statements: no ``conn.transaction()`` inside, and
    nothing that outlives the transaction (``SET`` without ``LOCAL``, ``LISTEN``, session
    advisory locks, ``WITH HOLD`` cursors, temporary tables)."""
    tenant = str(uuid.UUID(str(tenant_id)))  # a canonical UUID: safe as a literal
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)")
            try:
                yield conn
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError) and not conn.is_closed():
                    with contextlib.suppress(Exception):  # else the release rolls it back
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            clean = getattr(conn, "session_clean", None)  # a pool of create_pool's
            if clean is not None:
                clean()
    except Exception as exc:
        unavailable = _unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc


async def ping(pool: asyncpg.Pool, within: float = PING_TIMEOUT) -> None:
    """Raise :class:`DatabaseUnavailable` unless PostgreSQL answers within ``within`` s."""
    try:
        async with pool.acquire(timeout=within) as conn:
            await conn.fetchval("SELECT 1", timeout=within)
    except Exception as exc:
        raise (_unavailable(exc) or DatabaseUnavailable(f"{type(exc).__name__}: {exc}")) from exc


async def all_tenant_ids(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Every tenant id, for cross-tenant jobs that then work tenant by tenant."""
    rows = await pool.fetch("SELECT all_tenant_ids() AS tenant_id")
    return [row["tenant_id"] for row in rows]


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
