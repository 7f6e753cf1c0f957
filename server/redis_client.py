"""The Redis client the app's caches, locks and rate limits use.

A restarted Redis leaves every pooled connection dead; without retries the first command
on each fails. This client retries connection errors and timeouts three times with a short
backoff, within bounded socket timeouts. (The real-time broker manages its own connections:
it must notice a break to tell clients, so it does not retry.)"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
