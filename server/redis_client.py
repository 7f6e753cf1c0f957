"""The Redis client the app's caches, locks and rate limits use.

A restarted Redis leaves every pooled connection dead; without retries the first command
on each fails. This client retries connection errors and timeouts three times with a short
backoff, within bounded socket timeouts. Its pool waits (up to 5 s) for a free connection
instead of failing when many requests are in flight. (The real-time broker manages its own
connections: it must notice a break to tell clients, so it does not retry.)

With ``cluster=True`` (``BUILDPEER_REDIS_CLUSTER``) the URL names one node of a Redis Cluster
and the client is redis-py's asyncio ``RedisCluster``: it learns the slot map from that node,
follows ``MOVED`` / ``ASK`` and refreshes the map after a failover. It refuses a command whose
keys span slots, so every key used together shares a hash tag (``{...}``; see the callers)."""

from __future__ import annotations

import logging
from typing import Any, Literal, overload

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 200
# What every Redis user accepts: a single Redis or a Cluster client.
RedisClient = Redis | RedisCluster


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


@overload
def connect(url: str, *, cluster: Literal[False] = False) -> Redis: ...
@overload
def connect(url: str, *, cluster: bool) -> RedisClient: ...
def connect(url: str, *, cluster: bool = False) -> RedisClient:
    if cluster:
        return connect_cluster(url)
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


def connect_cluster(url: str, *, retries: int = 3) -> RedisCluster:
    """A Cluster client seeded from the node at ``url`` (its password and TLS apply to all)."""
    return RedisCluster.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        # connection errors, timeouts, ClusterDown: retried, each retry on a fresh slot map
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
    )


async def prepare(client: RedisClient) -> None:
    """Learn a Cluster's slot map before the first commands. redis-py initialises lazily on
    the first command; commands racing that first initialisation can land on a connection it
    is replacing (``AttributeError`` from a writer it closed; seen under the soak's first
    burst). Unreachable now: logged, and the client initialises on first use instead."""
    if not isinstance(client, RedisCluster):
        return
    try:
        await client.initialize()
    except (RedisError, OSError) as exc:
        log.warning("Redis Cluster not reachable at start; retrying on first use: %s", exc)
