"""``GET /health``: 200 when PostgreSQL, Redis and S3 answer; 503 naming what is down.

The body names the dependency and nothing more (``"redis": "down"``): exception texts carry
host names, ports and driver details, so they go to the log, not to an anonymous caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

CHECK_TIMEOUT = 2.0
log = logging.getLogger(__name__)


async def _database(request: Request) -> None:
    async with request.app.state.pool.acquire(timeout=CHECK_TIMEOUT) as conn:
        await conn.fetchval("SELECT 1")


async def _redis(request: Request) -> None:
    await request.app.state.redis.ping()


async def _s3(request: Request) -> None:
    await request.app.state.s3.head_bucket(Bucket=request.app.state.settings.bucket)


CHECKS: dict[str, Callable[[Request], Awaitable[None]]] = {
    "database": _database,
    "redis": _redis,
    "s3": _s3,
}


async def _run(name: str, request: Request) -> tuple[str, str]:
    try:
        await asyncio.wait_for(CHECKS[name](request), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "down"; the reason is for the log only
        log.warning(
            "health check failed", extra={"check": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
        )
        return name, "down"
    return name, "ok"


async def health(request: Request) -> JSONResponse:
    results = dict(await asyncio.gather(*(_run(name, request) for name in CHECKS)))
    down = [name for name, result in results.items() if result != "ok"]
    body: dict[str, Any] = {"status": "ok" if not down else "unavailable", "checks": results}
    if down:
        body["error"] = {"code": "unavailable", "message": f"down: {', '.join(down)}"}
    return JSONResponse(body, status_code=503 if down else 200)
