"""The Redis client the app's caches, locks and rate limits use.

A restarted Redis leaves every pooled connection dead; without retries the first command
on each fails. This client retries connection errors and timeouts three times with a short
backoff, within bounded socket timeouts. Its pool waits (up to 5 s) for a free connection
instead of failing when many requests are in flight. (The real-time broker manages its own
connections: it must notice a break to tell clients, so it does not retry.)"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

MAX_CONNECTIONS = 200


def connect(url: str) -> Redis:
    pool = BlockingConnectionPool.from_url(
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
