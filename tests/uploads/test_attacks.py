"""Tenant and role attacks: another tenant's ids are 404 everywhere, roles are enforced,
and no presigned URL ever names a key outside the caller's tenant prefix."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantFixture
from tests.uploads.conftest import create_multipart, key_of_url, policy_conditions, put_part, sign_part


async def test_tenant_b_cannot_touch_tenant_a_upload(
    client: httpx.AsyncClient, make_tenant: Any, s3: Any, settings: Any
) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    mp = await create_multipart(client, a.auth(), a.projects[0], size=6 * 1024 * 1024)
    etag = await put_part(await sign_part(client, a.auth(), mp, 1), b"a" * 100)
    q = {"key": mp.key}
    for role in ("admin", "field_worker"):
        h = b.auth(role)
        attempts = [
            await client.get(f"/s3/multipart/{mp.upload_id}/1", params=q, headers=h),
            await client.get(
                f"/s3/multipart/{mp.upload_id}/batch", params={**q, "partNumbers": "1,2"}, headers=h
            ),
            await client.get(f"/s3/multipart/{mp.upload_id}", params=q, headers=h),
            await client.post(
                f"/s3/multipart/{mp.upload_id}/complete",
                params=q,
                json={"parts": [{"PartNumber": 1, "ETag": etag}]},
                headers=h,
            ),
            await client.delete(f"/s3/multipart/{mp.upload_id}", params=q, headers=h),
            await client.get(f"/api/v1/uploads/{mp.id}", headers=h),
            await client.post(f"/api/v1/uploads/{mp.id}/progress", json={"bytes_done": 1}, headers=h),
            await client.get(f"/api/v1/projects/{a.projects[0]}/uploads", headers=h),
        ]
        for r in attempts:
            assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
            assert r.json()["error"]["code"] in ("not_found",)
    # Tenant A's upload is untouched.
    listed = s3.list_parts(Bucket=settings.bucket, Key=mp.key, UploadId=mp.upload_id)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1]
    status = (await client.get(f"/api/v1/uploads/{mp.id}", headers=a.auth())).json()
    assert status["status"] == "uploading"


async def test_tenant_b_cannot_mix_its_upload_id_with_a_key(
    client: httpx.AsyncClient, make_tenant: Any, settings: Any
) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    mine = await create_multipart(client, b.auth(), b.projects[0])
    theirs = await create_multipart(client, a.auth(), a.projects[0])
    # B's own uploadId with A's key, and A's uploadId with B's key: neither pair exists for B.
    r1 = await client.get(f"/s3/multipart/{mine.upload_id}/1", params={"key": theirs.key}, headers=b.auth())
    r2 = await client.get(f"/s3/multipart/{theirs.upload_id}/1", params={"key": mine.key}, headers=b.auth())
    assert r1.status_code == r2.status_code == 404
    # Whatever B signs is under B's tenant prefix.
    url = await sign_part(client, b.auth(), mine, 1)
    assert key_of_url(url, settings.bucket).startswith(f"tenant-{b.tenant_id}/")


async def test_create_requires_role_and_membership(client: httpx.AsyncClient, make_tenant: Any) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    body = {"filename": "a.pdf", "type": "application/pdf", "metadata": {"projectId": str(a.projects[0])}}
    params = {"filename": "a.pdf", "type": "application/pdf", "metadata[projectId]": str(a.projects[0])}

    investor = await client.post("/s3/multipart", json=body, headers=a.auth("investor"))
    assert investor.status_code == 403 and investor.json()["error"]["code"] == "forbidden"
    assert (await client.get("/s3/params", params=params, headers=a.auth("investor"))).status_code == 403

    outsider = await client.post("/s3/multipart", json=body, headers=a.auth("outsider"))
    assert outsider.status_code == 403
    assert (await client.get("/s3/params", params=params, headers=a.auth("outsider"))).status_code == 403

    other_tenant = await client.post("/s3/multipart", json=body, headers=b.auth("admin"))
    assert other_tenant.status_code == 404
    assert (await client.get("/s3/params", params=params, headers=b.auth("admin"))).status_code == 404

    # Admins need no membership; field workers upload to their own project.
    for role, project in (("admin", a.projects[1]), ("field_worker", a.projects[0])):
        ok = await client.post(
            "/s3/multipart", json={**body, "metadata": {"projectId": str(project)}}, headers=a.auth(role)
        )
        assert ok.status_code == 200, ok.text

    anonymous = await client.post("/s3/multipart", json=body)
    assert anonymous.status_code == 401


async def test_same_tenant_non_owner_cannot_act_but_can_read_per_membership(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    mp = await create_multipart(client, tenant.auth("field_worker"), tenant.projects[0])
    q = {"key": mp.key}
    # The investor of the project reads the status but cannot sign, complete or abort.
    inv = tenant.auth("investor")
    assert (await client.get(f"/api/v1/uploads/{mp.id}", headers=inv)).status_code == 200
    assert (await client.get(f"/s3/multipart/{mp.upload_id}/1", params=q, headers=inv)).status_code == 403
    assert (await client.delete(f"/s3/multipart/{mp.upload_id}", params=q, headers=inv)).status_code == 403
    # A field worker outside the project can neither act nor read.
    out = tenant.auth("outsider")
    assert (await client.get(f"/s3/multipart/{mp.upload_id}/1", params=q, headers=out)).status_code == 403
    assert (await client.get(f"/api/v1/uploads/{mp.id}", headers=out)).status_code == 403
    assert (
        await client.get(f"/api/v1/projects/{tenant.projects[0]}/uploads", headers=out)
    ).status_code == 403
    # An admin may act on anyone's upload.
    assert (
        await client.get(f"/s3/multipart/{mp.upload_id}/1", params=q, headers=tenant.auth("admin"))
    ).status_code == 200


async def test_file_names_never_leave_the_tenant_prefix(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any
) -> None:
    h = tenant.auth("field_worker")
    project = str(tenant.projects[0])
    for name in ("..", "../../tenant-x/evil.pdf", "a/b.pdf", "..\\..\\x.pdf", "/etc/passwd"):
        r = await client.post(
            "/s3/multipart",
            json={"filename": name, "type": "application/pdf", "metadata": {"projectId": project}},
            headers=h,
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_name", (name, r.text)
        r = await client.get(
            "/s3/params",
            params={"filename": name, "type": "application/pdf", "metadata[projectId]": project},
            headers=h,
        )
        assert r.status_code == 400, name
    for name in (".hidden.pdf", "plano final (v2)….pdf", "ñandú.pdf", "%2e%2e.pdf"):
        r = await client.get(
            "/s3/params",
            params={"filename": name, "type": "application/pdf", "metadata[projectId]": project},
            headers=h,
        )
        assert r.status_code == 200, (name, r.text)
        key = r.json()["fields"]["key"]
        assert key.startswith(f"tenant-{tenant.tenant_id}/project-{project}/uploads/")
        assert {"key": key} in policy_conditions(r.json())  # the POST policy binds exactly that key
        assert ".." not in key.split("/")
