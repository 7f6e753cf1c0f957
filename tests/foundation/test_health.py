from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack


async def test_health_ok_with_everything_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "s3": "ok"}
    assert response.headers["x-request-id"]


def test_health_503_naming_redis_when_redis_is_stopped(stack: Stack, live_server) -> None:
    server = live_server()
    try:
        stack.redis.stop()
        response = httpx.get(f"{server.url}/health", timeout=10)
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["redis"].startswith("down")
        assert body["checks"]["database"] == "ok"
        assert "redis" in body["error"]["message"]
    finally:
        stack.redis.start()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


async def test_metrics_and_request_ids(client: httpx.AsyncClient) -> None:
    await client.get("/health", headers={"X-Request-ID": "abc-123"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert "buildpeer_http_request_duration_seconds" in names
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert (await client.get("/nope")).json()["error"]["code"] == "not_found"


async def test_nul_in_text_is_a_400_not_a_500(client: httpx.AsyncClient, tenant) -> None:
    # PostgreSQL cannot store NUL; found by schemathesis on DELETE /api/v1/devices.
    response = await client.request(
        "DELETE", "/api/v1/devices", params={"token": "abc\x00def"}, headers=tenant.auth()
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_text"
