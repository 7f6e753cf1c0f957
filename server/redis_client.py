"""The Redis client the app's caches, locks and rate limits use.

A restarted Redis leaves every pooled connection dead; without retries the first command
on each fails. This client retries connection errors and timeouts three times with a short
backoff, within bounded socket timeouts. Its pool waits (up to 5 s) for a free connection
instead of failing when many requests are in flight. (The real-time broker manages its own
connections: it must notice a break to tell clients, so it does not retry.)"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

MAX_CONNECTIONS = 200


class _Pool(BlockingConnectionPool):
    """redis-py's blocking pool, except that taking an idle connection nobody is waiting for
    skips the condition lock, the wait timer and the pool's own wait-time metrics (a third of
    a cached status poll's Redis cost). Contended, creating, or in maintenance: redis-py's path."""

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if (
            self._available_connections
            and not getattr(self._condition, "_waiters", True)
            and not getattr(self, "_in_maintenance", True)
        ):
            connection = self.get_available_connection()
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        return await super().get_connection()


def connect(url: str) -> Redis:
    pool = _Pool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=5,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it
