"""``GET /api/v1/uploads/{id}/derivatives/{kind}``: presigned GETs of ready derivatives
only, inside the caller's tenant and projects."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import boto3
import httpx
import pytest

from core.db import tenant_transaction
from core.keys import derived_key, original_key
from core.settings import Settings
from tests.conftest import TenantFixture

THUMB = b"\xff\xd8\xff\xe0 fake thumbnail bytes"


async def make_upload(
    pool: asyncpg.Pool, settings: Settings, t: TenantFixture, *, status: str, with_thumb: bool = True
) -> uuid.UUID:
    upload_id = uuid.uuid4()
    project = t.projects[0]
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await conn.execute(
            """INSERT INTO uploads (upload_id, tenant_id, project_id, uploader_id, file_name, declared_type,
                   size_bytes, s3_key, status)
               VALUES ($1, $2, $3, $4, 'obra.jpg', 'image/jpeg', 100, $5, $6)""",
            upload_id,
            t.tenant_id,
            project,
            t.users["field_worker"],
            original_key(t.tenant_id, project, upload_id, "obra.jpg"),
            status,
        )
        if with_thumb:
            key = derived_key(t.tenant_id, project, upload_id, "thumb-200.jpg")
            await conn.execute(
                """INSERT INTO derivatives
                          (tenant_id, upload_id, kind, s3_key, mime_type, width, height, size_bytes)
                   VALUES ($1, $2, 'thumb-200', $3, 'image/jpeg', 200, 150, $4)""",
                t.tenant_id,
                upload_id,
                key,
                len(THUMB),
            )
            s3 = boto3.client(
                "s3",
                endpoint_url=settings.aws_endpoint_url,
                region_name=settings.aws_region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.put_object(Bucket=settings.bucket, Key=key, Body=THUMB, ContentType="image/jpeg")
    return upload_id


def path(upload_id: uuid.UUID | str, kind: str = "thumb-200") -> str:
    return f"/api/v1/uploads/{upload_id}/derivatives/{kind}"


async def test_ready_thumbnail_redirects_to_a_presigned_get(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, settings, tenant, status="ready")
    response = await client.get(path(upload_id), headers=tenant.auth())
    assert response.status_code == 302
    assert response.headers["cache-control"] == "private, no-store"
    location = response.headers["location"]
    assert urlsplit(location).path.endswith(
        f"/tenant-{tenant.tenant_id}/project-{tenant.projects[0]}/uploads/{upload_id}/derived/thumb-200.jpg"
    )
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    async with httpx.AsyncClient() as s3:
        fetched = await s3.get(location)
    assert fetched.status_code == 200 and fetched.content == THUMB


async def test_json_variant_for_img_elements(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, settings, tenant, status="ready")
    headers = {**tenant.auth("investor"), "Accept": "application/json"}
    response = await client.get(path(upload_id), headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["kind"] == "thumb-200" and body["mime_type"] == "image/jpeg"
    assert (body["width"], body["height"], body["expires_in"]) == (200, 150, 300)
    async with httpx.AsyncClient() as s3:
        assert (await s3.get(body["url"])).content == THUMB


@pytest.mark.parametrize("status", ["uploaded", "scanning", "processing", "failed", "quarantined"])
async def test_nothing_before_ready(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture, status: str
) -> None:
    """A derivative row may exist before the scan is clean (processors run in parallel):
    it is still not exposed."""
    upload_id = await make_upload(pool, settings, tenant, status=status)
    response = await client.get(path(upload_id), headers=tenant.auth())
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "derivative not found"}


async def test_ready_without_that_kind_is_404(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, settings, tenant, status="ready", with_thumb=False)
    response = await client.get(path(upload_id, "preview"), headers=tenant.auth())
    assert response.status_code == 404


async def test_bad_input(client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: TenantFixture) -> None:
    response = await client.get(path(uuid.uuid4(), "original"), headers=tenant.auth())
    assert response.status_code == 404
    assert "one of thumb-200, thumb-800, preview, text" in response.json()["error"]["message"]
    assert (await client.get(path("not-a-uuid"), headers=tenant.auth())).status_code == 404
    assert (await client.get(path(uuid.uuid4()), headers=tenant.auth())).status_code == 404
    no_token = await client.get(path(uuid.uuid4()))
    assert no_token.status_code == 401 and no_token.json()["error"]["code"] == "missing_token"


async def test_non_member_is_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture
) -> None:
    upload_id = await make_upload(pool, settings, tenant, status="ready")
    response = await client.get(path(upload_id), headers=tenant.auth("outsider"))
    assert response.status_code == 403
    assert "location" not in response.headers


async def test_another_tenant_cannot_see_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: TenantFixture, make_tenant: Any
) -> None:
    """Attack: a valid admin token of tenant B asks for tenant A's thumbnail by id."""
    upload_id = await make_upload(pool, settings, tenant, status="ready")
    other: TenantFixture = await make_tenant()
    for role in ("admin", "field_worker"):
        response = await client.get(path(upload_id), headers=other.auth(role))
        assert response.status_code == 404, role
        assert "location" not in response.headers
