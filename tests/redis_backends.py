"""Fixtures that run every test of a module on the single Redis and on a real six-process
Redis Cluster. A module opts in by importing them::

    from tests import redis_backends

    settings = redis_backends.settings
    redis = redis_backends.redis
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.settings import Settings
from server import redis_client
from server.redis_client import RedisClient


@pytest.fixture(params=["redis", "cluster"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The session's settings, or the same pointed at the session's Redis Cluster."""
    if request.param == "redis":
        return settings
    cluster = request.getfixturevalue("redis_cluster")
    return settings.replace(redis_url=cluster.url, redis_cluster=True)


@pytest.fixture
async def redis(settings: Settings, redis: Redis) -> AsyncIterator[RedisClient]:
    """The test's side of the Redis the app uses (a Cluster client on the Cluster)."""
    if not settings.redis_cluster:
        yield redis
        return
    assert settings.redis_url
    client = redis_client.connect(settings.redis_url, cluster=True)
    yield client
    await client.aclose()
