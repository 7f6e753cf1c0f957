"""The Companion routes end to end against moto over HTTP: bytes go straight to the
presigned URLs with plain HTTP PUTs, never through the API."""

from __future__ import annotations

from typing import Any

import httpx

from core.keys import parse_key
from server.uploads import s3ops
from tests.conftest import TenantFixture
from tests.uploads.conftest import (
    MIB,
    chunks,
    create_multipart,
    key_of_url,
    policy_conditions,
    post_form,
    put_part,
    random_bytes,
    sign_part,
)


async def test_12_mib_multipart_through_companion_routes(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    data = random_bytes(12 * MIB)
    headers = tenant.auth("field_worker")
    # Stock Uppy sends no size: the server still answers with a key under the tenant.
    mp = await create_multipart(client, headers, tenant.projects[0], filename="torre A.pdf")
    assert mp.key.startswith(f"tenant-{tenant.tenant_id}/project-{tenant.projects[0]}/uploads/")
    assert mp.key.endswith("/original/torre_A.pdf")
    parts = []
    for n, chunk in enumerate(chunks(data, 5 * MIB), start=1):
        url = await sign_part(client, headers, mp, n)
        assert key_of_url(url, settings.bucket) == mp.key
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=900" in url
        parts.append({"PartNumber": n, "ETag": await put_part(url, chunk)})
    assert len(parts) == 3

    status = (await client.get(f"/api/v1/uploads/{mp.id}", headers=headers)).json()
    assert status["status"] == "uploading"

    r = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete",
        params={"key": mp.key},
        json={"parts": parts},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["location"]
    stored = s3.get_object(Bucket=settings.bucket, Key=mp.key)["Body"].read()
    assert stored == data

    status = (await client.get(f"/api/v1/uploads/{mp.id}", headers=headers)).json()
    assert status["status"] == "uploaded"
    assert status["size"] == 12 * MIB and status["bytes_done"] == 12 * MIB and status["parts_done"] == 3
    assert parse_key(mp.key) is not None and parse_key(mp.key)["upload_id"] == mp.id  # type: ignore[index]

    # Completing again (a retry after a lost response) answers the same.
    again = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete",
        params={"key": mp.key},
        json={"parts": parts},
        headers=headers,
    )
    assert again.status_code == 200


async def test_1_mib_single_upload_is_a_post_policy(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    data = random_bytes(MIB)
    headers = tenant.auth("field_worker")
    r = await client.get(
        "/s3/params",
        params={
            "filename": "foto obra.jpg",
            "type": "image/jpeg",
            "metadata[projectId]": str(tenant.projects[0]),
            "metadata[name]": "foto obra.jpg",
            "metadata[type]": "image/jpeg",
            "metadata[size]": str(len(data)),  # the dashboard puts the size in the file meta
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    params = r.json()
    assert params["method"] == "POST" and "headers" not in params
    key = params["fields"]["key"]
    assert params["url"].rstrip("/").endswith(f"/{settings.bucket}")
    assert key.startswith(f"tenant-{tenant.tenant_id}/")
    # The policy binds the key, the type, exactly the declared size and the trace metadata.
    conditions = policy_conditions(params)
    assert {"key": key} in conditions and {"bucket": settings.bucket} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", len(data), len(data)] in conditions
    meta = [name for c in conditions if isinstance(c, dict) for name in c if name.startswith("x-amz-meta-")]
    assert all(params["fields"][name] for name in meta)
    posted = await post_form(params, data, headers={"Origin": "http://127.0.0.1:5173"})
    assert posted.status_code == 204, posted.text
    # What stock Uppy reads from the answer, from script (the local stack's moto adds them, as
    # S3 sends them): ETag and Location, both exposed by the bucket's CORS rule.
    assert posted.headers["etag"].strip('"') and posted.headers["location"].endswith(key.split("/")[-1])
    exposed = {h.strip().lower() for h in posted.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "location"} <= exposed
    obj = s3.get_object(Bucket=settings.bucket, Key=key)
    assert obj["Body"].read() == data
    assert obj["ContentType"] == "image/jpeg"
    status = (await client.get(f"/api/v1/uploads/{params['id']}", headers=headers)).json()
    assert status["status"] == "pending" and status["declared_type"] == "image/jpeg"
    assert status["size"] == len(data) and status["declared_sha256"] is None


async def test_single_upload_without_a_size_is_bounded_by_the_single_upload_limit(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any
) -> None:
    r = await client.get(
        "/s3/params",
        params={
            "filename": "a.pdf",
            "type": "application/pdf",
            "metadata[projectId]": str(tenant.projects[0]),
        },
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    assert ["content-length-range", 1, settings.single_put_max_bytes] in policy_conditions(r.json())


async def test_resume_sends_only_missing_part(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    data = random_bytes(12 * MIB)
    pieces = chunks(data, 5 * MIB)
    headers = tenant.auth("field_worker")
    mp = await create_multipart(
        client, headers, tenant.projects[0], size=len(data), filename="video.mp4", mime="video/mp4"
    )
    assert mp.part_size == 5 * MIB
    for n in (1, 2):
        await put_part(await sign_part(client, headers, mp, n), pieces[n - 1])

    # The client restarts: it only has key + uploadId (its state file) and asks what is stored.
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as restarted:
        r = await restarted.get(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=headers)
        assert r.status_code == 200, r.text
        stored = r.json()
        assert [p["PartNumber"] for p in stored] == [1, 2]
        assert all(p["Size"] == 5 * MIB and p["ETag"] for p in stored)
        missing = [n for n in (1, 2, 3) if n not in {p["PartNumber"] for p in stored}]
        assert missing == [3]
        batch = await restarted.get(
            f"/s3/multipart/{mp.upload_id}/batch", params={"key": mp.key, "partNumbers": "3"}, headers=headers
        )
        assert batch.status_code == 200, batch.text
        etag3 = await put_part(batch.json()["presignedUrls"]["3"], pieces[2])
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in stored]
        parts.append({"PartNumber": 3, "ETag": etag3})
        done = await restarted.post(
            f"/s3/multipart/{mp.upload_id}/complete",
            params={"key": mp.key},
            json={"parts": parts},
            headers=headers,
        )
        assert done.status_code == 200, done.text
    assert s3.get_object(Bucket=settings.bucket, Key=mp.key)["Body"].read() == data


async def test_part_can_be_resigned_and_batch_signs_many(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any
) -> None:
    headers = tenant.auth("admin")
    mp = await create_multipart(client, headers, tenant.projects[1], size=50 * MIB)
    first = await sign_part(client, headers, mp, 1)
    second = await sign_part(client, headers, mp, 1)
    assert key_of_url(first, settings.bucket) == key_of_url(second, settings.bucket) == mp.key
    r = await client.get(
        f"/s3/multipart/{mp.upload_id}/batch",
        params={"key": mp.key, "partNumbers": "1,2,3,10"},
        headers=headers,
    )
    urls = r.json()["presignedUrls"]
    assert sorted(urls, key=int) == ["1", "2", "3", "10"]
    assert all(key_of_url(u, settings.bucket) == mp.key and f"partNumber={n}" in u for n, u in urls.items())
    # 50 MiB has 10 parts of 5 MiB: part 11 does not exist.
    over = await client.get(f"/s3/multipart/{mp.upload_id}/11", params={"key": mp.key}, headers=headers)
    assert over.status_code == 400 and over.json()["error"]["code"] == "invalid_part_number"


async def test_complete_checks_every_etag_and_abort_marks_failed(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    headers = tenant.auth("field_worker")
    mp = await create_multipart(client, headers, tenant.projects[0])
    etag = await put_part(await sign_part(client, headers, mp, 1), b"x" * 1024)
    url = f"/s3/multipart/{mp.upload_id}/complete"
    wrong = await client.post(
        url, params={"key": mp.key}, json={"parts": [{"PartNumber": 1, "ETag": '"0000"'}]}, headers=headers
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "etag_mismatch"
    assert wrong.json()["message"]  # Uppy shows the top-level message
    missing = await client.post(
        url,
        params={"key": mp.key},
        json={"parts": [{"PartNumber": 1, "ETag": etag}, {"PartNumber": 2, "ETag": etag}]},
        headers=headers,
    )
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "part_missing"

    r = await client.delete(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=headers)
    assert r.status_code == 200 and r.json() == {}
    listed = s3.list_multipart_uploads(Bucket=settings.bucket, Prefix=mp.key).get("Uploads", [])
    assert listed == []
    status = (await client.get(f"/api/v1/uploads/{mp.id}", headers=headers)).json()
    assert (status["status"], status["reason"]) == ("failed", "aborted")
    after = await client.get(f"/s3/multipart/{mp.upload_id}/2", params={"key": mp.key}, headers=headers)
    assert after.status_code == 409


async def test_list_parts_follows_pages(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any
) -> None:
    headers = tenant.auth("field_worker")
    mp = await create_multipart(client, headers, tenant.projects[0])
    for n in range(1, 6):
        await put_part(await sign_part(client, headers, mp, n), bytes([n]) * 100)
    s3 = client._transport.app.state.s3  # type: ignore[attr-defined]
    parts = await s3ops.list_all_parts(s3, settings.bucket, mp.key, mp.upload_id, page_size=2)
    assert [p["PartNumber"] for p in parts] == [1, 2, 3, 4, 5]
    r = await client.get(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=headers)
    assert [p["PartNumber"] for p in r.json()] == [1, 2, 3, 4, 5]
