"""``buildpeer dev`` (``make run``) on a Redis Cluster (issue 17).

With ``BUILDPEER_REDIS_URL`` naming one node of the session's six-process Cluster and
``BUILDPEER_REDIS_CLUSTER=true``, dev starts no Redis of its own, hands the Cluster to every
process it starts and to other terminals (``var/dev.env``), and the product works on it: an
upload made with ``buildpeer upload`` reaches ``ready`` over the WebSocket, its status is
served, a tenant's rate limit answers 429, and the status cache, the channels' history and
the rate-limit windows are keys on the Cluster. SIGTERM then stops dev and everything it
started (uvicorn used to re-raise it and end dev before its cleanup). A Redis mode that does
not match the Redis (a Cluster node used as one Redis, a Cluster asked for without a URL)
stops dev before it starts anything.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from PIL import Image
from redis.cluster import RedisCluster as ClusterClient
from websockets.asyncio.client import connect

from devstack.process import free_port, wait_until
from devstack.redis_cluster import RedisCluster
from server.realtime.channels import parse_channel
from server.status_cache import cache_key
from server.uploads.ratelimit import window_key
from server.uploads.status import access_key
from tests.foundation.test_dev_stack import _env, _healthy

TENANT_LIMIT = 100  # requests per minute per tenant; per IP off (the IP's windows are shared)


def _dev(var_dir: Path, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (var_dir.parent / "dev.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dev"],
            env={**_env(var_dir, port), **extra},
            cwd=var_dir.parent,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    finally:
        log.close()


def _cluster_env(cluster: RedisCluster) -> dict[str, str]:
    return {"BUILDPEER_REDIS_URL": cluster.url, "BUILDPEER_REDIS_CLUSTER": "true"}


async def _watch(url: str, token: str, channel: str, ready: asyncio.Event, seen: list[Any]) -> None:
    """Subscribe (``ready`` set once subscribed), then collect the channel's publications
    until one says ``ready``."""
    async with connect(url, open_timeout=60) as ws:
        await ws.send(
            orjson.dumps({"id": 1, "connect": {"token": token}}).decode()
            + "\n"
            + orjson.dumps({"id": 2, "subscribe": {"channel": channel}}).decode()
        )
        async for frame in ws:
            for line in str(frame).split("\n"):
                message = orjson.loads(line)
                if not message:
                    await ws.send("{}")  # pong
                elif message.get("id") == 2:
                    assert "error" not in message, message
                    ready.set()
                elif "error" in message:
                    raise AssertionError(message)
                elif (pub := message.get("push", {}).get("pub")) is not None:
                    seen.append(pub["data"])
                    if pub["data"].get("status") == "ready":
                        return


@pytest.mark.timeout(240)  # dev's start and stop (its worker ends its SQS long polls) dominate
async def test_dev_on_a_redis_cluster_keeps_cache_broker_and_limits_there(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    var_dir = tmp_path / "var"
    port = free_port()
    proc = _dev(
        var_dir,
        port,
        {
            **_cluster_env(redis_cluster),
            "BUILDPEER_RATE_LIMIT_IP_PER_MINUTE": "0",
            "BUILDPEER_RATE_LIMIT_TENANT_PER_MINUTE": str(TENANT_LIMIT),
            # short long polls: the server's consumers stop within a second on Ctrl-C
            "BUILDPEER_EVENTS_WAIT_SECONDS": "1",
            "BUILDPEER_PUSH_WAIT_SECONDS": "1",
        },
    )
    api = f"http://127.0.0.1:{port}"
    cluster = ClusterClient.from_url(redis_cluster.url)
    watcher: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: proc.poll() is not None or _healthy(f"{api}/health"),
            150,
            "dev on the Cluster",
        )
        log = (tmp_path / "dev.log").read_text()
        assert proc.poll() is None, log[-2000:]
        assert f"Redis Cluster at {redis_cluster.url} (3 masters)" in log
        assert "redis       embedded" not in log and not (var_dir / "redis").exists()
        env = dict(
            line.split("=", 1) for line in (var_dir / "dev.env").read_text().splitlines() if "=" in line
        )
        assert env["BUILDPEER_REDIS_URL"] == redis_cluster.url
        assert env["BUILDPEER_REDIS_CLUSTER"] == "true"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert not [c for c in children if "redis-server" in c.name()], "dev started a Redis of its own"
        [worker] = [c for c in children if "cli.main worker" in " ".join(c.cmdline())]
        assert worker.environ()["BUILDPEER_REDIS_URL"] == redis_cluster.url
        assert worker.environ()["BUILDPEER_REDIS_CLUSTER"] == "true"

        demo = json.loads((var_dir / "demo.json").read_text())
        tenant, project, token = demo["tenant_id"], env["BUILDPEER_DEMO_PROJECT"], env["BUILDPEER_TOKEN"]
        channel = f"project:{project}"
        photo = tmp_path / "foto.jpg"
        Image.new("RGB", (320, 240), (180, 90, 40)).save(photo)

        subscribed, seen = asyncio.Event(), list[Any]()
        watcher = asyncio.create_task(
            _watch(f"ws://127.0.0.1:{port}/connection/websocket", token, channel, subscribed, seen)
        )
        await asyncio.wait_for(subscribed.wait(), 60)
        upload = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", "upload", "--project", project, str(photo), "--json"],
            env=_env(var_dir, 0),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )
        upload_id = json.loads(upload.stdout)["id"]
        await asyncio.wait_for(watcher, 90)  # through the Cluster's sharded PUB/SUB
        assert {d["upload_id"] for d in seen} == {upload_id}
        assert seen[-1]["status"] == "ready"

        async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}) as http:
            status = await http.get(f"/api/v1/uploads/{upload_id}", timeout=30)
            assert status.status_code == 200 and status.json()["status"] == "ready"
            user = uuid.UUID(status.json()["uploader_id"])
            # read-through just now (30 s TTL): the document and the read right, on the Cluster
            assert cluster.exists(cache_key(tenant, upload_id)) == 1
            assert cluster.exists(access_key(uuid.UUID(tenant), user, uuid.UUID(upload_id))) == 1
            for name in (channel, f"upload:{upload_id}"):
                history = "bp:rt:{" + parse_channel(name).broker_name(uuid.UUID(tenant)) + "}:h"
                assert cluster.xlen(history) >= 1, history

            limited = None
            for _ in range(3 * TENANT_LIMIT):  # a minute boundary on the way restarts the count once
                response = await http.get("/api/v1/me", timeout=30)
                if response.status_code == 429:
                    limited = response
                    break
                assert response.status_code == 200
            assert limited is not None, "the tenant's limit never answered 429"
            assert limited.json()["error"]["code"] == "rate_limited"
        counts = [int(v) for v in (cluster.get(k) for k in _tenant_windows(cluster, tenant)) if v]
        assert counts and max(counts) > TENANT_LIMIT  # the window that said 429, on the Cluster
    finally:
        if watcher is not None:
            watcher.cancel()
        cluster.close()
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (as a process manager stops dev) ends dev cleanly, and every process it started."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    wait_until(lambda: not any(c.is_running() and c.status() != "zombie" for c in children), 30, "exit")


def _tenant_windows(cluster: ClusterClient, tenant: str) -> list[str]:
    """The tenant's rate-limit window keys (one hash tag: one node), scanned on every master."""
    pattern = window_key("tenant", tenant, 0).removesuffix("0") + "*"
    return [k.decode() for k in cluster.scan_iter(match=pattern)]


def test_dev_refuses_a_redis_mode_that_does_not_match_the_redis(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    """Before anything starts (no PostgreSQL, no var dir): a one-line reason, exit code 2."""
    cases = [
        (
            {"BUILDPEER_REDIS_URL": redis_cluster.url},
            "is a Redis Cluster node: set BUILDPEER_REDIS_CLUSTER=true",
        ),
        ({"BUILDPEER_REDIS_CLUSTER": "true"}, "BUILDPEER_REDIS_CLUSTER=true needs BUILDPEER_REDIS_URL"),
    ]
    for extra, reason in cases:
        var_dir = tmp_path / "var"
        proc = _dev(var_dir, free_port(), extra)
        assert proc.wait(60) == 2
        assert reason in (tmp_path / "dev.log").read_text()
        assert not var_dir.exists()
