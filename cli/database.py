"""The database pool of a one-shot command: the URL required, an unreachable server
explained in one line, the pool closed when the command is done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from cli import CommandError
from core.db import DatabaseUnavailable, create_pool
from core.settings import Settings


@asynccontextmanager
async def command_pool(settings: Settings, *, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    if not settings.database_url:
        raise CommandError("BUILDPEER_DATABASE_URL is not set (start `buildpeer dev` or set it)")
    try:
        pool = await create_pool(settings.database_url, min_size=1, max_size=max_size)
    except DatabaseUnavailable as exc:
        raise CommandError(f"cannot reach the database: {exc}") from exc
    try:
        yield pool
    finally:
        await pool.close()
