"""The status poll's fast path (``server.uploads.status.StatusFastPath``): a poll with a bearer
token the app has verified before skips the middleware stack, and answers exactly what the
stack answers — headers, errors, the latency histogram, rate limits."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client import REGISTRY

from core.settings import Settings
from tests import redis_backends
from tests.conftest import TenantFixture
from tests.uploads.conftest import create_multipart
from tests.uploads.test_ratelimit import limited_client, random_ip

# Every test here runs on the single Redis and on a real six-process Redis Cluster.
settings = redis_backends.settings
redis = redis_backends.redis
ROUTE = "/api/v1/uploads/{upload_id}"


def polls(status: int) -> float:
    labels = {"method": "GET", "route": ROUTE, "status": str(status)}
    return REGISTRY.get_sample_value("buildpeer_http_request_duration_seconds_count", labels) or 0.0


def shape(r: httpx.Response) -> tuple[int, bytes, tuple[str, ...]]:
    return r.status_code, r.content, tuple(sorted(r.headers.keys()))


async def test_a_poll_answers_as_the_middleware_stack_does(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    h = tenant.auth("investor")
    mp = await create_multipart(client, tenant.auth("field_worker"), tenant.projects[0])
    # An id in another spelling (upper case) is served by the stack, the canonical one by the
    # fast path once the token is known: the same answer, header for header.
    by_stack = await client.get(f"/api/v1/uploads/{mp.id.upper()}", headers=h)
    before = polls(200)
    fast = await client.get(f"/api/v1/uploads/{mp.id}", headers=h)
    assert polls(200) == before + 1  # counted under the route template, like every route
    assert shape(fast) == shape(by_stack)
    assert fast.status_code == 200 and fast.json()["id"] == mp.id
    assert fast.headers["etag"] == by_stack.headers["etag"]
    assert fast.headers["vary"] == by_stack.headers["vary"] == "Origin"
    assert fast.headers["cache-control"] == "private, no-cache"
    assert fast.headers["x-request-id"] != by_stack.headers["x-request-id"]  # one per request
    # A sane X-Request-ID is echoed, anything else replaced.
    echoed = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "X-Request-ID": "poll-1.a_b"})
    assert echoed.headers["x-request-id"] == "poll-1.a_b"
    odd = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "X-Request-ID": "bad id!"})
    assert odd.headers["x-request-id"] not in ("", "bad id!")
    # Not modified: the same 304 either way.
    before = polls(304)
    etag = fast.headers["etag"]
    fast_304 = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "If-None-Match": etag})
    stack_304 = await client.get(f"/api/v1/uploads/{mp.id.upper()}", headers={**h, "If-None-Match": etag})
    assert polls(304) == before + 2  # the two paths count under the same labels
    assert shape(fast_304) == shape(stack_304) and fast_304.status_code == 304
    assert fast_304.headers["x-request-id"] and fast_304.headers["vary"] == "Origin"


async def test_cross_origin_polls_keep_their_cors_headers(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    h = tenant.auth("field_worker")
    mp = await create_multipart(client, h, tenant.projects[0])
    r = await client.get(f"/api/v1/uploads/{mp.id}", headers={**h, "Origin": "https://app.example.com"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "ETag" in r.headers["access-control-expose-headers"]


async def test_refusals_are_the_same_json_errors(
    client: httpx.AsyncClient, tenant: TenantFixture, make_tenant: Any
) -> None:
    other: TenantFixture = await make_tenant()
    mp = await create_multipart(client, tenant.auth("field_worker"), tenant.projects[0])
    url = f"/api/v1/uploads/{mp.id}"
    # An outsider of the project: 403 on the first poll (a miss) and on the cached right.
    before = polls(403)
    denied = [await client.get(url, headers=tenant.auth("outsider")) for _ in range(3)]
    assert {r.status_code for r in denied} == {403}
    assert {r.json()["error"]["code"] for r in denied} == {"forbidden"}
    assert len({shape(r) for r in denied}) == 1 and denied[-1].headers["x-request-id"]
    assert polls(403) == before + 3
    # Another tenant's admin never sees it: 404, every time.
    hidden = [await client.get(url, headers=other.auth("admin")) for _ in range(3)]
    assert {r.status_code for r in hidden} == {404}
    assert {r.json()["error"]["code"] for r in hidden} == {"not_found"}
    assert len({shape(r) for r in hidden}) == 1
    # A bad token is the stack's 401, a known token with an id that does not exist a 404.
    bad = await client.get(url, headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    missing = await client.get(
        "/api/v1/uploads/00000000-0000-4000-8000-000000000000", headers=tenant.auth("field_worker")
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_rate_limits_count_fast_polls(
    settings: Settings, client: httpx.AsyncClient, make_tenant: Any
) -> None:
    t: TenantFixture = await make_tenant()
    mp = await create_multipart(client, t.auth("field_worker"), t.projects[0])
    url = f"/api/v1/uploads/{mp.id}"
    per_ip = settings.replace(rate_limit_ip_per_minute=3, rate_limit_tenant_per_minute=0)
    async with limited_client(per_ip, random_ip()) as c:
        # the first poll verifies the token (the stack), the next ones take the fast path
        codes = [(await c.get(url, headers=t.auth())).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        before = polls(429)
        over = await c.get(url, headers=t.auth())
        assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert over.headers["x-request-id"] and over.headers["vary"] == "Origin"
        assert polls(429) == before + 1
    per_tenant = settings.replace(rate_limit_ip_per_minute=0, rate_limit_tenant_per_minute=2)
    async with limited_client(per_tenant, random_ip()) as c1, limited_client(per_tenant, random_ip()) as c2:
        assert (await c1.get(url, headers=t.auth())).status_code == 200
        assert (await c2.get(url, headers=t.auth("investor"))).status_code == 200
        assert (await c1.get(url, headers=t.auth())).status_code == 429  # the tenant's budget
