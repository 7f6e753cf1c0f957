"""What the signatures bind (against moto over HTTP; moto does not check signatures, so these
tests read what was signed and what the API did — test_seaweedfs.py shows a real S3 refusing
what falls outside): part URLs sign the declared part length and the part's sha256, a
declared sha256 is stored and signed, a complete that does not add up aborts the S3 upload at
once, a complete never replaces an existing object, and invisible characters in file names
are refused."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import TenantFixture
from tests.uploads.conftest import MIB, create_multipart, policy_conditions, put_bytes


def signed_headers(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


async def test_part_urls_sign_the_declared_part_length(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    h = tenant.auth()
    size = 12 * MIB + 7
    mp = await create_multipart(client, h, tenant.projects[0], size=size)
    assert mp.part_size == 5 * MIB
    for n in (1, 2, 3):  # 5 + 5 MiB, then the remainder (SeaweedFS refuses other lengths)
        r = await client.get(f"/s3/multipart/{mp.upload_id}/{n}", params={"key": mp.key}, headers=h)
        assert r.status_code == 200, r.text
        assert "content-length" in signed_headers(r.json()["url"])
        assert "headers" not in r.json()  # nothing to add: every HTTP client sends Content-Length
    batch = await client.get(
        f"/s3/multipart/{mp.upload_id}/batch", params={"key": mp.key, "partNumbers": "1,3"}, headers=h
    )
    assert batch.status_code == 200, batch.text
    assert all("content-length" in signed_headers(u) for u in batch.json()["presignedUrls"].values())
    # Without a declared size (stock Uppy) there is no length to sign.
    free = await create_multipart(client, h, tenant.projects[0])
    r = await client.get(f"/s3/multipart/{free.upload_id}/1", params={"key": free.key}, headers=h)
    assert signed_headers(r.json()["url"]) == ["host"]


async def test_declared_sha256_is_stored_and_signed_into_every_part(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    h = tenant.auth()
    data = b"\x00\x01" * (3 * MIB) + b"fin"
    pieces = [data[: 5 * MIB], data[5 * MIB :]]
    whole = hashlib.sha256(data).hexdigest()
    body = {
        "filename": "plano.pdf",
        "type": "application/pdf",
        "size": len(data),
        "sha256": whole.upper(),  # hex in any case; stored lower-case
        "metadata": {"projectId": str(tenant.projects[0])},
    }
    created = await client.post("/s3/multipart", json=body, headers=h)
    assert created.status_code == 200, created.text
    mp = created.json()
    doc = (await client.get(f"/api/v1/uploads/{mp['id']}", headers=h)).json()
    assert doc["declared_sha256"] == whole and doc["sha256"] is None and doc["sha256_verified"] is None
    q = {"key": mp["key"]}
    # Every part must now come with its own digest; a batch cannot carry them.
    missing = await client.get(f"/s3/multipart/{mp['uploadId']}/1", params=q, headers=h)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "checksum_required"
    batch = await client.get(
        f"/s3/multipart/{mp['uploadId']}/batch", params={**q, "partNumbers": "1"}, headers=h
    )
    assert batch.status_code == 400 and batch.json()["error"]["code"] == "checksum_required"
    bad = await client.get(f"/s3/multipart/{mp['uploadId']}/1", params={**q, "sha256": "xyz"}, headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_checksum"
    parts = []
    for n, chunk in enumerate(pieces, start=1):
        digest = hashlib.sha256(chunk)
        r = await client.get(
            f"/s3/multipart/{mp['uploadId']}/{n}", params={**q, "sha256": digest.hexdigest()}, headers=h
        )
        assert r.status_code == 200, r.text
        signed = r.json()
        assert signed["headers"] == {"x-amz-checksum-sha256": b64(digest.digest())}
        assert {"content-length", "x-amz-checksum-sha256"} <= set(signed_headers(signed["url"]))
        put = await put_bytes(signed["url"], chunk, signed["headers"])
        assert put.status_code == 200, put.text
        parts.append({"PartNumber": n, "ETag": put.headers["etag"], "ChecksumSHA256": b64(digest.digest())})
    # The complete may repeat the file's digest, never contradict it.
    wrong = await client.post(
        f"/s3/multipart/{mp['uploadId']}/complete",
        params=q,
        json={"parts": parts, "sha256": hashlib.sha256(b"other").hexdigest()},
        headers=h,
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "checksum_mismatch"
    done = await client.post(
        f"/s3/multipart/{mp['uploadId']}/complete",
        params=q,
        json={"parts": parts, "sha256": whole},
        headers=h,
    )
    assert done.status_code == 200, done.text
    assert s3.get_object(Bucket=settings.bucket, Key=mp["key"])["Body"].read() == data


async def test_part_checksums_need_a_declared_file_checksum(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    h = tenant.auth()
    mp = await create_multipart(client, h, tenant.projects[0], size=6 * MIB)
    r = await client.get(
        f"/s3/multipart/{mp.upload_id}/1", params={"key": mp.key, "sha256": "a" * 64}, headers=h
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "checksum_not_declared"


async def test_single_upload_policy_carries_the_declared_checksum(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    digest = hashlib.sha256(b"%PDF-1.4 hola")
    r = await client.get(
        "/s3/params",
        params={
            "filename": "a.pdf",
            "type": "application/pdf",
            "size": "13",
            "sha256": b64(digest.digest()),  # S3's base64 form is accepted too
            "metadata[projectId]": str(tenant.projects[0]),
        },
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    signed = r.json()
    conditions = policy_conditions(signed)
    assert {"x-amz-checksum-sha256": b64(digest.digest())} in conditions
    assert ["content-length-range", 13, 13] in conditions
    doc = (await client.get(f"/api/v1/uploads/{signed['id']}", headers=tenant.auth())).json()
    assert doc["declared_sha256"] == digest.hexdigest()


async def test_complete_that_does_not_add_up_aborts_the_s3_upload_at_once(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any, app: Any
) -> None:
    h = tenant.auth()
    mp = await create_multipart(client, h, tenant.projects[0], size=5 * MIB + 10)
    url = (await client.get(f"/s3/multipart/{mp.upload_id}/1", params={"key": mp.key}, headers=h)).json()[
        "url"
    ]
    short = await put_bytes(url, b"s" * (5 * MIB))  # moto does not check the signed length
    assert short.status_code == 200
    r = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete",
        params={"key": mp.key},
        json={"parts": [{"PartNumber": 1, "ETag": short.headers["etag"]}]},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "size_mismatch", r.text
    listed = s3.list_multipart_uploads(Bucket=settings.bucket, Prefix=mp.key).get("Uploads", [])
    assert [u for u in listed if u["UploadId"] == mp.upload_id] == []  # not left for the 24-hour rule
    doc = (await client.get(f"/api/v1/uploads/{mp.id}", headers=h)).json()
    assert (doc["status"], doc["reason"]) == ("failed", "size_mismatch")
    events = [e for e in app.state.publisher.events if str(e.upload_id) == mp.id]
    assert events[-1].status == "failed" and events[-1].data["reason"] == "size_mismatch"


async def test_complete_never_replaces_an_existing_object(
    client: httpx.AsyncClient, tenant: TenantFixture, s3: Any, settings: Any
) -> None:
    h = tenant.auth()
    mp = await create_multipart(client, h, tenant.projects[0])
    url = (await client.get(f"/s3/multipart/{mp.upload_id}/1", params={"key": mp.key}, headers=h)).json()[
        "url"
    ]
    part = await put_bytes(url, b"%PDF-1.4 parte")
    s3.put_object(Bucket=settings.bucket, Key=mp.key, Body=b"%PDF-1.4 ya estaba")  # someone got there first
    r = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete",
        params={"key": mp.key},
        json={"parts": [{"PartNumber": 1, "ETag": part.headers["etag"]}]},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "object_exists", r.text  # moto enforces it
    assert s3.get_object(Bucket=settings.bucket, Key=mp.key)["Body"].read() == b"%PDF-1.4 ya estaba"


@pytest.mark.parametrize(
    "name",
    [
        "factura\u202egpj.exe",  # RIGHT-TO-LEFT OVERRIDE: shows as "factura" + "exe.jpg"
        "foto\u200b.jpg",  # ZERO WIDTH SPACE
        "plano\u2066.pdf",  # LEFT-TO-RIGHT ISOLATE
        "\ufeffinforme.pdf",  # BYTE ORDER MARK / ZERO WIDTH NO-BREAK SPACE
    ],
)
async def test_file_names_with_invisible_format_characters_are_refused(
    client: httpx.AsyncClient, tenant: TenantFixture, name: str
) -> None:
    h = tenant.auth()
    meta = {"projectId": str(tenant.projects[0])}
    r = await client.post(
        "/s3/multipart", json={"filename": name, "type": "image/jpeg", "metadata": meta}, headers=h
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_name", r.text
    r = await client.get(
        "/s3/params",
        params={"filename": name, "type": "image/jpeg", "metadata[projectId]": meta["projectId"]},
        headers=h,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_name", r.text


async def test_accented_and_non_latin_names_are_fine(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    for name in ("Señalización obra ñ.pdf", "Ação São Paulo.pdf", "施工图.pdf", "مخطط.pdf"):
        r = await client.post(
            "/s3/multipart",
            json={
                "filename": name,
                "type": "application/pdf",
                "metadata": {"projectId": str(tenant.projects[0])},
            },
            headers=tenant.auth(),
        )
        assert r.status_code == 200, (name, r.text)


async def test_complete_refused_by_s3_for_the_clients_parts_is_a_400(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    h = tenant.auth()
    mp = await create_multipart(client, h, tenant.projects[0])
    parts = []
    for n in (1, 2):  # a first part under S3's 5 MiB minimum
        url = (
            await client.get(f"/s3/multipart/{mp.upload_id}/{n}", params={"key": mp.key}, headers=h)
        ).json()["url"]
        put = await put_bytes(url, b"%PDF-1.4 " * 100)
        parts.append({"PartNumber": n, "ETag": put.headers["etag"]})
    r = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete", params={"key": mp.key}, json={"parts": parts}, headers=h
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "complete_refused", r.text
    assert "EntityTooSmall" in r.json()["error"]["message"]
