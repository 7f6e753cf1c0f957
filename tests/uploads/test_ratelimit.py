"""Rate limits in Redis: per IP and per tenant, 429 with Retry-After."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from core.settings import Settings
from server.app import create_app
from server.proxies import TrustedProxies
from tests import redis_backends
from tests.conftest import TenantFixture

# Every test here runs on the single Redis and on a real six-process Redis Cluster.
settings = redis_backends.settings
redis = redis_backends.redis


@asynccontextmanager
async def limited_client(settings: Settings, ip: str, **limits: int) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.replace(**limits), run_components=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def test_per_ip_limit_answers_429_with_retry_after(settings: Settings, tenant: TenantFixture) -> None:
    ip = random_ip()
    async with limited_client(settings, ip, rate_limit_ip_per_minute=3, rate_limit_tenant_per_minute=0) as c:
        url = f"/api/v1/projects/{tenant.projects[0]}/uploads"
        codes = [(await c.get(url, headers=tenant.auth())).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = await c.get(url, headers=tenant.auth())
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["code"] == "rate_limited"
        assert (await c.get("/health")).status_code != 429  # health checks are never limited
    async with limited_client(settings, random_ip(), rate_limit_ip_per_minute=3) as other:
        assert (await other.get(url, headers=tenant.auth())).status_code == 200


async def test_per_tenant_limit_spans_ips_and_spares_other_tenants(
    settings: Settings, make_tenant: Any
) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    limits = {"rate_limit_ip_per_minute": 0, "rate_limit_tenant_per_minute": 2}
    url_a = f"/api/v1/projects/{a.projects[0]}/uploads"
    async with (
        limited_client(settings, random_ip(), **limits) as c1,
        limited_client(settings, random_ip(), **limits) as c2,
    ):
        assert (await c1.get(url_a, headers=a.auth())).status_code == 200
        assert (await c2.get(url_a, headers=a.auth("admin"))).status_code == 200
        blocked = await c1.get(url_a, headers=a.auth())
        assert blocked.status_code == 429 and "retry-after" in blocked.headers
        url_b = f"/api/v1/projects/{b.projects[0]}/uploads"
        assert (await c2.get(url_b, headers=b.auth())).status_code == 200
        # A forged token cannot spend tenant A's budget: it is not verified, so it counts nowhere.
        forged = await c1.get(url_b, headers={"Authorization": "Bearer not.a.jwt"})
        assert forged.status_code == 401


# ---- the client address behind proxies (server/proxies.py), over real sockets -------------


def _fresh_window() -> None:
    """Start in a window with time left, so a budget is not reset halfway through a test."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


def _viewer() -> str:
    return f"203.0.{random.randrange(256)}.{random.randrange(1, 255)}"


def test_each_client_behind_a_trusted_chain_has_its_own_budget(settings: Settings, live_server: Any) -> None:
    # The test client is the ALB (127.0.0.1); 10.0.0.0/16 is a further trusted hop.
    limited = settings.replace(
        rate_limit_ip_per_minute=2,
        rate_limit_tenant_per_minute=0,
        trusted_proxies=("127.0.0.1/32", "10.0.0.0/16"),
    )
    server = live_server(settings_override=limited)
    url = f"{server.url}/openapi.json"
    a, b, c, d = _viewer(), _viewer(), _viewer(), _viewer()
    _fresh_window()
    with httpx.Client(timeout=10) as http:

        def codes(headers: dict[str, str], n: int = 3) -> list[int]:
            return [http.get(url, headers=headers).status_code for _ in range(n)]

        assert codes({"X-Forwarded-For": f"{a}, 10.0.3.4"}) == [200, 200, 429]
        assert codes({"X-Forwarded-For": b}) == [200, 200, 429]  # b's own budget, untouched by a
        # What the client writes left of the chain changes nothing: still a's spent budget.
        assert codes({"X-Forwarded-For": f"{_viewer()}, {a}, 10.0.3.4"}, 1) == [429]
        # CloudFront names the viewer; the ALB's XFF entry (a CloudFront edge) is not the client.
        assert codes({"CloudFront-Viewer-Address": f"{c}:46532", "X-Forwarded-For": f"{a}, 10.9.9.9"}) == [
            200,
            200,
            429,
        ]
        assert codes({"CloudFront-Viewer-Address": f"{d}:443"}, 1) == [200]


async def test_a_forged_forwarded_for_from_outside_the_chain_is_ignored(
    settings: Settings, live_server: Any, redis: Any
) -> None:
    # Only 10.0.0.0/16 is trusted: the test client (127.0.0.1) is the client itself.
    limited = settings.replace(
        rate_limit_ip_per_minute=2, rate_limit_tenant_per_minute=0, trusted_proxies=("10.0.0.0/16",)
    )
    server = live_server(settings_override=limited)
    async for key in redis.scan_iter(match="bp:rl:{ip:127.0.0.1}:*"):
        await redis.delete(key)
    url = f"{server.url}/openapi.json"
    await asyncio.to_thread(_fresh_window)
    async with httpx.AsyncClient(timeout=10) as http:
        forged = [
            (
                await http.get(
                    url, headers={"X-Forwarded-For": _viewer(), "CloudFront-Viewer-Address": f"{_viewer()}:1"}
                )
            )
            for _ in range(3)
        ]
    assert [r.status_code for r in forged] == [200, 200, 429]  # one budget: 127.0.0.1's


def test_trusted_proxies_walk_from_the_right() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    xff = [(b"x-forwarded-for", b"1.1.1.1, 198.51.100.7"), (b"x-forwarded-for", b"10.1.2.3")]
    assert proxies.client("10.0.0.1", xff) == ("198.51.100.7", None)
    assert proxies.client("192.0.2.1", xff) == ("192.0.2.1", None)  # untrusted peer: headers ignored
    assert proxies.client("10.0.0.1", [(b"x-forwarded-for", b"10.2.2.2, 10.3.3.3")]) == ("10.2.2.2", None)
    assert proxies.client("10.0.0.1", [(b"x-forwarded-for", b"garbage, 10.3.3.3")]) == ("10.3.3.3", None)
    viewer6 = [(b"cloudfront-viewer-address", b"2001:db9::1:46532"), (b"x-forwarded-proto", b"https")]
    assert proxies.client("2001:db8::5", viewer6) == ("2001:db9::1", "https")
    assert proxies.client("::ffff:10.0.0.9", [(b"x-forwarded-for", b"192.0.2.55")]) == ("192.0.2.55", None)
    assert TrustedProxies([]).client("10.0.0.1", xff) == ("10.0.0.1", None)  # nothing configured
