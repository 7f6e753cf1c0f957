"""Every multi-key command, Lua script and pipeline the app sends passes through a Redis
Cluster client, which refuses a command whose keys span slots (``CROSSSLOT``), against a real
six-process Cluster: the status ``MGET``, the status cache's versioned put, the broker's
publish and history scripts and presence transactions, the rate-limit pipeline, the digest
leader and lock scripts, the progress throttle and the session store."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from devstack.redis_cluster import RedisCluster as ClusterProcesses
from server import redis_client
from server.realtime.broker import Publication
from server.realtime.redis_broker import RedisBroker
from server.session_cookie import SessionStore
from server.status_cache import StatusCache, cache_key
from server.uploads.changes import ProgressThrottle
from server.uploads.ratelimit import over_limit, window_key
from server.uploads.status import access_key
from subscribers.digest import scheduler, service


@pytest.fixture
async def cluster(redis_cluster: ClusterProcesses) -> AsyncIterator[RedisCluster]:
    client = redis_client.connect_cluster(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


async def test_the_cluster_client_refuses_keys_in_two_slots(cluster: RedisCluster) -> None:
    a, b = "bp:test:a", "bp:test:b"
    assert cluster.keyslot(a) != cluster.keyslot(b)
    with pytest.raises(RedisClusterException):
        await cluster.mget(a, b)
    with pytest.raises((RedisClusterException, ResponseError)):
        await cluster.eval("return redis.call('get', KEYS[2])", 2, a, b)


async def test_status_mget_and_versioned_put(cluster: RedisCluster) -> None:
    tenant, user, upload = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    document_key, right_key = cache_key(tenant, upload), access_key(tenant, user, upload)
    assert cluster.keyslot(document_key) == cluster.keyslot(right_key)
    cache = StatusCache(cluster, ttl_seconds=30)
    await cache.put(tenant, {"id": str(upload), "version": 2, "status": "ready"})
    await cache.put(tenant, {"id": str(upload), "version": 1, "status": "uploading"})  # older: kept out
    await cache.set_raw(right_key, b"1")
    raw, right = await cluster.mget(document_key, right_key)  # what the status route sends
    assert raw is not None and orjson.loads(raw)["status"] == "ready" and right == b"1"
    assert await cache.get_many(document_key, right_key) == [raw, b"1"]
    # the route's own spelling of the right's key is the same key
    assert right_key == f"bp:upload-access:{tenant}:{user}:{{{upload}}}"


async def test_rate_limit_pipeline(cluster: RedisCluster) -> None:
    tenant = str(uuid.uuid4())
    checks = [("ip", "10.1.2.3", 2), ("tenant", tenant, 2)]
    assert await over_limit(cluster, checks) == 0
    assert await over_limit(cluster, checks) == 0
    assert await over_limit(cluster, checks) > 0  # third request in the window: over
    window = int(time.time() // 60)
    assert int(await cluster.get(window_key("tenant", tenant, window)) or 0) >= 3
    # one identity's windows share a slot
    assert cluster.keyslot(window_key("tenant", tenant, 1)) == cluster.keyslot(
        window_key("tenant", tenant, 2)
    )


async def test_broker_scripts_and_presence(redis_cluster: ClusterProcesses) -> None:
    broker = RedisBroker(redis_cluster.url, history_size=10, history_ttl=60, cluster=True)
    received: list[tuple[str, Publication]] = []

    async def nothing() -> None:
        return None

    await broker.start(lambda ch, pub: received.append((ch, pub)), nothing)
    try:
        channel = f"{uuid.uuid4()}:upload:{uuid.uuid4()}"
        first = await broker.publish(channel, b'{"n":1}', key="k")  # the publish script
        pubs, head = await broker.history(channel, since=0, limit=-1)  # the history script
        assert head == first and [p.data for p in pubs] == [b'{"n":1}']
        await broker.add_presence(channel, "client-1", "user-1")  # MULTI of four commands
        assert (await broker.presence_stats(channel)).num_clients == 1
        await broker.remove_presence(channel, "client-1")
        assert (await broker.presence_stats(channel)).num_clients == 0
        await broker.publish_control(b"hello")  # SPUBLISH on the control shard
    finally:
        await broker.stop()


async def test_digest_leader_and_lock_scripts(cluster: RedisCluster) -> None:
    key = f"{scheduler.LEADER_KEY}:{uuid.uuid4()}"
    assert await cluster.eval(scheduler._ACQUIRE, 1, key, "me", 10_000) == 1
    assert await cluster.eval(scheduler._ACQUIRE, 1, key, "other", 10_000) == 0
    assert await cluster.eval(scheduler._RELEASE, 1, key, "me") == 1
    lock = f"bp:digest:lock:{uuid.uuid4()}:daily:2026-12-01"
    assert await cluster.set(lock, "owner", nx=True, px=10_000)
    assert await cluster.eval(service._RELEASE, 1, lock, "owner") == 1


async def test_progress_throttle_and_session_store(cluster: RedisCluster) -> None:
    throttle = ProgressThrottle(cluster, interval_ms=10_000)
    upload = uuid.uuid4()
    assert await throttle.allow(upload) is True
    assert await throttle.allow(upload) is False
    store: Any = SessionStore(cluster)
    session_id, _ = await store.create("a-token", int(time.time()) + 60)
    assert await store.token(session_id) == "a-token"
    await store.end(session_id)
    assert await store.token(session_id) is None
