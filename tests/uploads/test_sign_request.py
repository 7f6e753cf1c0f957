"""``POST /s3/sign`` (stock Uppy 6's ``signRequest`` backend): every S3 step signed, the
client talking to S3 itself over real HTTP (the session's moto), and what is refused:
another tenant's key or UploadId, an UploadId S3 does not know for the key, an investor, a
non-member, part numbers 0 and 10,001, an unknown method — each a 4xx JSON error."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from core.db import tenant_transaction
from tests.conftest import TenantFixture
from tests.uploads.conftest import MIB, policy_conditions, post_form, random_bytes

SIGN = "/s3/sign"


def meta(
    t: TenantFixture, name: str = "plano.pdf", size: int | None = None, project: int = 0
) -> dict[str, Any]:
    m: dict[str, Any] = {"projectId": str(t.projects[project]), "name": name, "type": "application/pdf"}
    if size is not None:
        m["size"] = size
    return m


def complete_xml(etags: list[str]) -> str:
    """CompleteMultipartUpload's body for parts 1..n."""
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1)
    )
    return f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"


async def sign(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return await client.post(SIGN, json=body, headers=headers)


async def signed_create(client: httpx.AsyncClient, t: TenantFixture, size: int) -> tuple[str, str]:
    """Sign CreateMultipartUpload, then create it on S3 as Uppy does: ``(key, UploadId)``."""
    r = await sign(client, t.auth(), {"method": "POST", "key": "plano.pdf", "metadata": meta(t, size=size)})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "?uploads" in answer["url"] or "&uploads" in answer["url"], answer["url"]
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(answer["url"], headers={"Content-Type": "application/pdf"})
    assert created.status_code == 200, created.text
    found = re.search(r"<UploadId>([^<]+)</UploadId>", created.text)
    assert found, created.text
    return answer["key"], found.group(1)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    if code is not None:
        assert r.json()["error"]["code"] == code, r.text


async def test_single_upload_is_a_post_policy_with_the_tenant_key(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    data = random_bytes(MIB)
    r = await sign(
        client,
        tenant.auth(),
        {
            "method": "PUT",
            "key": "foto.pdf",
            "contentType": "application/pdf",
            "metadata": meta(tenant, "foto.pdf", len(data)),
        },
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["key"] == answer["fields"]["key"]
    assert answer["key"].startswith(f"tenant-{tenant.tenant_id}/project-{tenant.projects[0]}/uploads/")
    stored = await post_form(answer, data)
    assert stored.status_code in (200, 201, 204), stored.text
    assert s3.get_object(Bucket=settings.bucket, Key=answer["key"])["Body"].read() == data
    # The policy binds the declared size and type (moto does not check policies; SeaweedFS
    # tests show a real S3 refusing what breaks them).
    conditions = policy_conditions(answer)
    assert ["content-length-range", len(data), len(data)] in conditions
    assert {"Content-Type": "application/pdf"} in conditions


async def test_multipart_every_step_signed_and_bytes_identical(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any, pool: Any
) -> None:
    data = random_bytes(12 * MIB)
    key, s3_upload = await signed_create(client, tenant, len(data))
    pieces = [data[: 5 * MIB], data[5 * MIB : 10 * MIB], data[10 * MIB :]]
    etags = []
    async with httpx.AsyncClient(timeout=60) as http:
        for n, piece in enumerate(pieces, start=1):
            r = await sign(
                client, tenant.auth(), {"method": "PUT", "key": key, "uploadId": s3_upload, "partNumber": n}
            )
            assert r.status_code == 200, r.text
            put = await http.put(r.json()["url"], content=piece)
            assert put.status_code == 200, put.text
            etags.append(put.headers["etag"])
        listed = await sign(client, tenant.auth(), {"method": "GET", "key": key, "uploadId": s3_upload})
        parts = await http.get(listed.json()["url"])
        assert parts.status_code == 200 and parts.text.count("<PartNumber>") == 3, parts.text
        done = await sign(client, tenant.auth(), {"method": "POST", "key": key, "uploadId": s3_upload})
        xml = complete_xml(etags)
        answer = done.json()
        # Write-once: the complete's condition is signed and handed to the client to send.
        assert answer["headers"] == {"If-None-Match": "*"}
        assert "if-none-match" in parse_qs(urlsplit(answer["url"]).query)["X-Amz-SignedHeaders"][0]
        completed = await http.post(
            answer["url"], content=xml, headers={"Content-Type": "application/xml", **answer["headers"]}
        )
        assert completed.status_code == 200, completed.text
    assert s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read() == data
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        row = await conn.fetchrow(
            "SELECT status, multipart_upload_id, size_bytes FROM uploads WHERE s3_key = $1", key
        )
    assert row["multipart_upload_id"] == s3_upload  # bound on the first part
    assert row["status"] == "uploading" and row["size_bytes"] == len(data)
    # The part beyond the declared size's three parts is refused.
    r = await sign(
        client, tenant.auth(), {"method": "PUT", "key": key, "uploadId": s3_upload, "partNumber": 4}
    )
    assert_error(r, 400, "invalid_part_number")


async def test_signed_complete_never_replaces_an_object_that_exists(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    data = random_bytes(5 * MIB + 1)
    key, s3_upload = await signed_create(client, tenant, len(data))
    async with httpx.AsyncClient(timeout=60) as http:
        etags = []
        for n, piece in enumerate((data[: 5 * MIB], data[5 * MIB :]), start=1):
            r = await sign(
                client, tenant.auth(), {"method": "PUT", "key": key, "uploadId": s3_upload, "partNumber": n}
            )
            put = await http.put(r.json()["url"], content=piece)
            assert put.status_code == 200, put.text
            etags.append(put.headers["etag"])
        # Something was written at the key meanwhile (an earlier complete, another writer).
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"first write")
        done = (
            await sign(client, tenant.auth(), {"method": "POST", "key": key, "uploadId": s3_upload})
        ).json()
        xml = complete_xml(etags)
        completed = await http.post(
            done["url"], content=xml, headers={"Content-Type": "application/xml", **done["headers"]}
        )
    assert completed.status_code == 412, completed.text
    assert s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read() == b"first write"


async def test_refusals_are_4xx_json(
    client: httpx.AsyncClient, make_tenant: Any, settings: Any, pool: Any
) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    key, s3_upload = await signed_create(client, a, 12 * MIB)
    part = {"method": "PUT", "key": key, "uploadId": s3_upload, "partNumber": 1}

    # Another tenant: A's key with A's UploadId, or B's own key with A's UploadId → 404.
    for role in ("admin", "field_worker"):
        for method in ("PUT", "GET", "POST", "DELETE"):
            body = {**part, "method": method}
            if method != "PUT":
                body.pop("partNumber")
            assert_error(await sign(client, b.auth(role), body), 404, "not_found")
    b_key, _ = await signed_create(client, b, 12 * MIB)
    assert_error(await sign(client, b.auth(), {**part, "key": b_key}), 404)
    # An UploadId S3 does not know for that key (B's own fresh key, never created on S3 with it).
    b_fresh = (
        await sign(client, b.auth(), {"method": "POST", "key": "x.pdf", "metadata": meta(b, size=12 * MIB)})
    ).json()
    assert_error(
        await sign(client, b.auth(), {**part, "key": b_fresh["key"], "uploadId": "no-such-upload"}),
        404,
        "unknown_upload_id",
    )
    assert_error(
        await sign(client, b.auth(), {**part, "key": b_fresh["key"], "uploadId": s3_upload}),
        404,
        "unknown_upload_id",
    )
    # Roles and membership: an investor cannot create nor sign another's parts; a non-member cannot create.
    create = {"method": "POST", "key": "plano.pdf", "metadata": meta(a)}
    assert_error(await sign(client, a.auth("investor"), create), 403, "forbidden")
    assert_error(await sign(client, a.auth("investor"), {**create, "method": "PUT"}), 403, "forbidden")
    assert_error(await sign(client, a.auth("investor"), part), 403, "forbidden")
    assert_error(await sign(client, a.auth("outsider"), create), 403, "forbidden")
    assert_error(await sign(client, a.auth("outsider"), part), 403, "forbidden")
    assert_error(await sign(client, a.auth(), {**create, "metadata": meta(a, project=1)}), 403, "forbidden")
    # Part numbers and methods.
    for number in (0, 10_001, -1, "1", True, 1.5):
        assert_error(await sign(client, a.auth(), {**part, "partNumber": number}), 400, "invalid_part_number")
    for method in ("PATCH", "HEAD", "put", 7, None):
        assert_error(await sign(client, a.auth(), {**part, "method": method}), 400, "invalid_method")
    assert_error(await sign(client, a.auth(), {"method": "DELETE", "key": "k"}), 400, "invalid_method")
    # Authentication comes before validation: no token, any body → 401.
    for body in ({}, {"method": "PATCH"}, part):
        r = await client.post(SIGN, json=body)
        assert_error(r, 401)
    r = await client.post(SIGN, content=b"not json")
    assert_error(r, 401)
    # A's upload was never bound by any of these attempts: A signs its part fine.
    assert (await sign(client, a.auth(), part)).status_code == 200


async def test_abort_fails_the_upload_with_aborted(
    client: httpx.AsyncClient, tenant: TenantFixture, pool: Any
) -> None:
    key, s3_upload = await signed_create(client, tenant, 12 * MIB)
    r = await sign(client, tenant.auth(), {"method": "DELETE", "key": key, "uploadId": s3_upload})
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.delete(r.json()["url"])).status_code == 204
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        row = await conn.fetchrow("SELECT status, reason_code FROM uploads WHERE s3_key = $1", key)
    assert (row["status"], row["reason_code"]) == ("failed", "aborted")
    again = await sign(
        client, tenant.auth(), {"method": "PUT", "key": key, "uploadId": s3_upload, "partNumber": 1}
    )
    assert_error(again, 409, "upload_not_in_progress")
