from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings, SettingsError
from devstack.process import free_port
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
        assert body["checks"]["redis"] == "down"  # named, without the exception's text
        assert "Error" not in response.text and str(stack.redis.port) not in response.text
        assert body["checks"]["database"] == "ok"
        assert "redis" in body["error"]["message"]
    finally:
        stack.redis.start()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_metrics_only_on_the_internal_listener(settings: Settings, live_server: Any) -> None:
    metrics_port = free_port()
    server = live_server(settings_override=settings.replace(metrics_port=metrics_port))
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    public = httpx.get(f"{server.url}/metrics", timeout=10)
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"
    internal = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert internal.status_code == 200
    names = {f.name for f in text_string_to_metric_families(internal.text)}
    assert "buildpeer_http_request_duration_seconds" in names
    server.stop()
    # The listener is the app's: it stops with it.
    try:
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
        raise AssertionError("the metrics listener outlived its app")
    except httpx.ConnectError:
        pass


def test_metrics_port_must_not_be_the_public_port() -> None:
    with pytest.raises(SettingsError, match="BUILDPEER_METRICS_PORT"):
        Settings.from_env({"BUILDPEER_PORT": "8000", "BUILDPEER_METRICS_PORT": "8000"})


async def test_request_ids_and_json_404(client: httpx.AsyncClient) -> None:
    await client.get("/health", headers={"X-Request-ID": "abc-123"})
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
