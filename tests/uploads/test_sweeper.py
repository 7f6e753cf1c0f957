"""The stale-upload sweeper aborts idle multipart uploads and marks them failed/expired."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest

from core.events import EventType
from server.uploads.sweeper import StaleUploadSweeper, sweep_once
from tests.conftest import TenantFixture
from tests.uploads.conftest import create_multipart, put_part, sign_part


async def age(owner_pool: asyncpg.Pool, upload_id: str, hours: float) -> None:
    await owner_pool.execute(
        "UPDATE uploads SET last_activity_at = now() - make_interval(secs => $2) WHERE upload_id = $1",
        uuid.UUID(upload_id),
        hours * 3600,
    )


async def test_sweep_expires_idle_uploads_only(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    app: Any,
    owner_pool: asyncpg.Pool,
    s3: Any,
    settings: Any,
) -> None:
    h = tenant.auth("field_worker")
    idle = await create_multipart(client, h, tenant.projects[0])
    await put_part(await sign_part(client, h, idle, 1), b"z" * 10)
    fresh = await create_multipart(client, h, tenant.projects[0])
    await age(owner_pool, idle.id, 25)
    await age(owner_pool, fresh.id, 1)

    state = app.state
    expired = await sweep_once(state.pool, state.s3, state.settings, state.status_cache, state.publisher)
    assert expired >= 1
    doc = (await client.get(f"/api/v1/uploads/{idle.id}", headers=h)).json()
    assert (doc["status"], doc["reason"]) == ("failed", "expired")
    assert (await client.get(f"/api/v1/uploads/{fresh.id}", headers=h)).json()["status"] == "pending"
    uploads = s3.list_multipart_uploads(Bucket=settings.bucket, Prefix=idle.key).get("Uploads", [])
    assert uploads == []
    assert any(
        e.type is EventType.UPLOAD_FAILED and str(e.upload_id) == idle.id for e in state.publisher.events
    )
    # Signing a part of an expired upload is refused.
    r = await client.get(f"/s3/multipart/{idle.upload_id}/2", params={"key": idle.key}, headers=h)
    assert r.status_code == 409


async def test_component_runs_and_stops(
    client: httpx.AsyncClient, tenant: TenantFixture, app: Any, owner_pool: asyncpg.Pool
) -> None:
    h = tenant.auth("field_worker")
    idle = await create_multipart(client, h, tenant.projects[0])
    await age(owner_pool, idle.id, 48)
    sweeper = StaleUploadSweeper(app.state, interval_seconds=0.05)
    await sweeper.start()
    for _ in range(200):
        if (await client.get(f"/api/v1/uploads/{idle.id}", headers=h)).json()["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    await sweeper.stop()
    assert sweeper.sweeps >= 1 and sweeper.failure is None
    assert (await client.get(f"/api/v1/uploads/{idle.id}", headers=h)).json()["reason"] == "expired"


async def test_component_crash_is_surfaced(app: Any, client: httpx.AsyncClient) -> None:
    broken = SimpleNamespace(
        settings=app.state.settings, pool=None, s3=None, status_cache=None, publisher=None
    )
    sweeper = StaleUploadSweeper(broken, interval_seconds=0.05)
    await sweeper.start()
    for _ in range(100):
        if sweeper.failure is not None:
            break
        await asyncio.sleep(0.02)
    assert sweeper.failure is not None
    with pytest.raises(RuntimeError, match="crashed"):
        await sweeper.stop()
