"""Serving and removing originals against moto over HTTP (versioned bucket, as provisioned):
``GET /api/v1/uploads/{id}/original`` is a presigned GET of the scanned version only, for a
``ready`` upload the caller may read; ``DELETE /api/v1/uploads/{id}`` removes every version
of the original and the derivatives, and the upload leaves the listings."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import httpx
from starlette.applications import Starlette

from core.db import tenant_transaction
from core.events import EventType
from core.keys import derived_key
from core.settings import Settings
from core.status import UploadStatus
from core.transition import transition
from tests.conftest import TenantFixture
from tests.uploads.conftest import post_form

NAME = "Informe técnico — Torre Ñ 2026.pdf"
PDF = b"%PDF-1.4\n" + b"informe " * 4000


async def single_upload(
    client: httpx.AsyncClient, t: TenantFixture, data: bytes, name: str = NAME, mime: str = "application/pdf"
) -> dict[str, Any]:
    r = await client.get(
        "/s3/params",
        params={"filename": name, "type": mime, "metadata[projectId]": str(t.projects[0]), "size": len(data)},
        headers=t.auth("field_worker"),
    )
    assert r.status_code == 200, r.text
    signed: dict[str, Any] = r.json()
    posted = await post_form(signed, data)
    assert posted.status_code == 204, posted.text
    return signed


async def mark_scanned_and_ready(
    pool: asyncpg.Pool, t: TenantFixture, upload_id: str, key: str, s3: Any, bucket: str
) -> str:
    """What the processors do (they are tested elsewhere): pin the version they scanned and
    move the upload forward to ``ready``. Returns that VersionId."""
    head = s3.head_object(Bucket=bucket, Key=key)
    version = head.get("VersionId")
    assert version, "the provisioned bucket versions objects"
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await conn.execute(
            "UPDATE uploads SET scanned_version_id = $2, scanned_etag = $3, sha256 = $4 WHERE upload_id = $1",
            uuid.UUID(upload_id),
            version,
            head["ETag"],
            hashlib.sha256(
                s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
            ).hexdigest(),
        )
        for status in (
            UploadStatus.UPLOADED,
            UploadStatus.SCANNING,
            UploadStatus.PROCESSING,
            UploadStatus.READY,
        ):
            assert await transition(conn, uuid.UUID(upload_id), status) is not None
    return str(version)


async def test_download_is_the_scanned_version_with_a_utf8_name(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    make_tenant: Any,
    pool: asyncpg.Pool,
    s3: Any,
    settings: Settings,
) -> None:
    signed = await single_upload(client, tenant, PDF)
    upload_id, key = signed["id"], signed["fields"]["key"]
    url = f"/api/v1/uploads/{upload_id}/original"

    # Not ready yet: 404, for everyone (the uploader and an admin too).
    for role in ("field_worker", "admin"):
        r = await client.get(url, headers=tenant.auth(role))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text

    version = await mark_scanned_and_ready(pool, tenant, upload_id, key, s3, settings.bucket)
    # A newer version appears afterwards (a replayed URL, say): never served.
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"%PDF-1.4 reemplazo", ContentType="application/pdf")

    r = await client.get(url, headers=tenant.auth("investor"))  # a member may read
    assert r.status_code == 200, r.text
    answer = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert answer["version_id"] == version and answer["expires_in"] == settings.download_expiry_seconds
    query = parse_qs(urlsplit(answer["url"]).query)
    assert query["versionId"] == [version]  # pinned in the signed URL
    assert query["X-Amz-Expires"] == [str(settings.download_expiry_seconds)]
    disposition = query["response-content-disposition"][0]
    assert disposition == answer["content_disposition"]
    assert disposition.startswith("attachment; ")
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == NAME
    assert 'filename="Informe tecnico' in disposition  # the ASCII fallback
    async with httpx.AsyncClient() as http:
        got = await http.get(answer["url"])
    assert got.status_code == 200
    assert got.content == PDF and hashlib.sha256(got.content).hexdigest() == answer["sha256"]
    assert got.headers["content-disposition"] == disposition

    inline = (await client.get(url, params={"inline": "1"}, headers=tenant.auth())).json()
    assert inline["content_disposition"].startswith("inline; ")

    # A non-member of the project and another tenant's admin: 404, not 403.
    assert (await client.get(url, headers=tenant.auth("outsider"))).status_code == 404
    other = await make_tenant()
    assert (await client.get(url, headers=other.auth("admin"))).status_code == 404
    assert (await client.get("/api/v1/uploads/not-a-uuid/original", headers=tenant.auth())).status_code == 404


async def test_inline_only_for_types_a_browser_renders_safely(
    client: httpx.AsyncClient, tenant: TenantFixture, pool: asyncpg.Pool, s3: Any, settings: Settings
) -> None:
    data = b"PK\x03\x04" + b"z" * 100
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    signed = await single_upload(client, tenant, data, name="memoria.docx", mime=docx)
    await mark_scanned_and_ready(pool, tenant, signed["id"], signed["fields"]["key"], s3, settings.bucket)
    r = await client.get(
        f"/api/v1/uploads/{signed['id']}/original", params={"inline": "1"}, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["content_disposition"]
        == "attachment; filename=\"memoria.docx\"; filename*=UTF-8''memoria.docx"
    )


async def test_delete_removes_every_version_and_derivative_and_leaves_the_listing(
    client: httpx.AsyncClient,
    app: Starlette,
    tenant: TenantFixture,
    make_tenant: Any,
    pool: asyncpg.Pool,
    s3: Any,
    settings: Settings,
) -> None:
    signed = await single_upload(client, tenant, PDF)
    upload_id, key = signed["id"], signed["fields"]["key"]
    await mark_scanned_and_ready(pool, tenant, upload_id, key, s3, settings.bucket)
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"%PDF-1.4 v2")  # a second version
    preview = derived_key(tenant.tenant_id, tenant.projects[0], uuid.UUID(upload_id), "preview.png")
    s3.put_object(Bucket=settings.bucket, Key=preview, Body=b"\x89PNG", ContentType="image/png")
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        await conn.execute(
            "INSERT INTO derivatives (tenant_id, upload_id, kind, s3_key, mime_type) "
            "VALUES ($1, $2, 'preview', $3, 'image/png')",
            tenant.tenant_id,
            uuid.UUID(upload_id),
            preview,
        )
    prefix = key.rsplit("/original/", 1)[0] + "/"
    listed = s3.list_object_versions(Bucket=settings.bucket, Prefix=prefix)
    assert len(listed.get("Versions", [])) == 3

    url = f"/api/v1/uploads/{upload_id}"
    # An investor may read, never delete; another field worker neither; another tenant sees nothing.
    r = await client.delete(url, headers=tenant.auth("investor"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert (await client.delete(url, headers=tenant.auth("outsider"))).status_code == 403
    other = await make_tenant()
    assert (await client.delete(url, headers=other.auth("admin"))).status_code == 404
    assert len(s3.list_object_versions(Bucket=settings.bucket, Prefix=prefix).get("Versions", [])) == 3

    events_before = len(app.state.publisher.events)
    r = await client.delete(url, headers=tenant.auth("field_worker"))  # the uploader
    assert r.status_code == 204, r.text
    gone = s3.list_object_versions(Bucket=settings.bucket, Prefix=prefix)
    assert gone.get("Versions", []) == [] and gone.get("DeleteMarkers", []) == []
    published = [e for e in app.state.publisher.events[events_before:] if str(e.upload_id) == upload_id]
    assert [(e.type, e.status) for e in published] == [(EventType.UPLOAD_DELETED, "deleted")]

    doc = (await client.get(url, headers=tenant.auth())).json()
    assert doc["status"] == "deleted" and doc["derivatives"] == []
    listing = (
        await client.get(f"/api/v1/projects/{tenant.projects[0]}/uploads", headers=tenant.auth())
    ).json()
    assert upload_id not in [item["id"] for item in listing["items"]]
    assert (await client.get(f"{url}/original", headers=tenant.auth())).status_code == 404
    assert (await client.delete(url, headers=tenant.auth("admin"))).status_code == 404  # already gone
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM derivatives WHERE upload_id = $1", uuid.UUID(upload_id))
            == 0
        )


async def test_admin_deletes_an_unfinished_multipart_upload(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Settings
) -> None:
    body = {"filename": "video.mp4", "type": "video/mp4", "metadata": {"projectId": str(tenant.projects[0])}}
    created = (await client.post("/s3/multipart", json=body, headers=tenant.auth())).json()
    r = await client.delete(f"/api/v1/uploads/{created['id']}", headers=tenant.auth("admin"))
    assert r.status_code == 204, r.text
    uploads = s3.list_multipart_uploads(Bucket=settings.bucket, Prefix=created["key"]).get("Uploads", [])
    assert [u for u in uploads if u["UploadId"] == created["uploadId"]] == []  # aborted in S3 too
    doc = (await client.get(f"/api/v1/uploads/{created['id']}", headers=tenant.auth())).json()
    assert doc["status"] == "deleted"
