"""Rate limits in Redis: per IP and per tenant, 429 with Retry-After."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from core.settings import Settings
from server.app import create_app
from tests.conftest import TenantFixture


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
