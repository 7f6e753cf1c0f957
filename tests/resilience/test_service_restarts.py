"""Redis and PostgreSQL restarted under a running server (issue 8 fault tests).

Each test stops one of the session's real services and starts it again on the same port;
the server process is never restarted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx

from devstack.process import wait_until
from tests.conftest import Stack, TenantFixture


def _create_upload(base: str, tenant: TenantFixture) -> str:
    body = {
        "filename": "losa.pdf",
        "type": "application/pdf",
        "metadata": {"projectId": str(tenant.projects[0]), "name": "losa.pdf", "type": "application/pdf"},
    }
    r = httpx.post(f"{base}/s3/multipart", json=body, headers=tenant.auth(), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _poll(base: str, upload_id: str, tenant: TenantFixture) -> httpx.Response:
    return httpx.get(f"{base}/api/v1/uploads/{upload_id}", headers=tenant.auth(), timeout=10)


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    wait_until(check, timeout, what)


def test_status_polling_answers_200_from_postgres_while_redis_is_down(
    stack: Stack, tenant: TenantFixture, live_server
) -> None:
    base = live_server().url
    upload_id = _create_upload(base, tenant)
    before = _poll(base, upload_id, tenant)
    assert before.status_code == 200
    stack.redis.kill()  # a crash, not a clean shutdown
    try:
        for _ in range(5):
            during = _poll(base, upload_id, tenant)
            assert during.status_code == 200, during.text
            assert during.json()["id"] == upload_id
            assert during.json()["status"] == before.json()["status"]
        # Another tenant's id is still 404 through the fallback path.
        other = _poll(base, str(uuid.uuid4()), tenant)
        assert other.status_code == 404
    finally:
        stack.redis.start()
    _eventually(lambda: _poll(base, upload_id, tenant).status_code == 200, "polling after Redis returns")
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200


def test_requests_get_503_while_postgres_is_down_and_recover_without_restart(
    stack: Stack, tenant: TenantFixture, live_server
) -> None:
    base = live_server().url
    fresh = str(uuid.uuid4())  # never cached: every poll must ask PostgreSQL
    assert _poll(base, fresh, tenant).status_code == 404
    stack.pg.stop()
    try:
        during = _poll(base, fresh, tenant)
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "database_unavailable"
        assert during.headers["retry-after"]
        health = httpx.get(f"{base}/health", timeout=10)
        assert health.status_code == 503 and "database" in health.json()["error"]["message"]
    finally:
        stack.pg.start()
    deadline = time.monotonic() + 30
    statuses = []
    while time.monotonic() < deadline:
        status = _poll(base, fresh, tenant).status_code
        statuses.append(status)
        if status == 404:
            break
        assert status == 503, statuses  # never a 500 while the pool reconnects
        time.sleep(0.2)
    assert statuses[-1] == 404, statuses
    created = _create_upload(base, tenant)  # writes work again too
    assert _poll(base, created, tenant).status_code == 200
