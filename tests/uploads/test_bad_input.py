"""Bad input gets a 4xx with a JSON error, never a 5xx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import TenantFixture
from tests.uploads.conftest import create_multipart


def assert_json_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


@pytest.mark.parametrize(
    ("patch", "status", "code"),
    [
        ({"metadata": None}, 400, "invalid_metadata"),
        ({"metadata": {}}, 400, "invalid_metadata"),
        ({"metadata": "p"}, 400, "invalid_metadata"),
        ({"metadata": {"projectId": "not-a-uuid"}}, 400, "invalid_metadata"),
        ({"metadata": {"projectId": ["x"]}}, 400, "invalid_metadata"),
        ({"size": -1}, 400, "invalid_size"),
        ({"size": "12abc"}, 400, "invalid_size"),
        ({"size": 6 * 1024**3}, 400, "too_large"),  # over the documented maximum
        ({"type": "application/x-msdownload"}, 415, "type_not_allowed"),
        ({"type": None}, 400, "invalid_type"),
        ({"filename": "../../etc/passwd"}, 400, "invalid_file_name"),
        ({"filename": ""}, 400, "invalid_file_name"),
        ({"filename": 7}, 400, "invalid_file_name"),
    ],
)
async def test_create_multipart_rejects(
    client: httpx.AsyncClient, tenant: TenantFixture, patch: dict[str, object], status: int, code: str
) -> None:
    body: dict[str, object] = {
        "filename": "plano.dwg",
        "type": "image/vnd.dwg",
        "metadata": {"projectId": str(tenant.projects[0])},
        **patch,
    }
    r = await client.post("/s3/multipart", json=body, headers=tenant.auth())
    assert_json_error(r, status, code)
    assert r.json()["message"] == r.json()["error"]["message"]  # Uppy's top-level message


async def test_params_rejects(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth()
    p = str(tenant.projects[0])
    assert_json_error(
        await client.get("/s3/params", params={"filename": "a.pdf", "type": "application/pdf"}, headers=h),
        400,
        "invalid_metadata",
    )
    assert_json_error(
        await client.get(
            "/s3/params",
            params={"filename": "a.pdf", "type": "text/html", "metadata[projectId]": p},
            headers=h,
        ),
        415,
        "type_not_allowed",
    )
    assert_json_error(
        await client.get(
            "/s3/params",
            params={"filename": "a.pdf", "type": "application/pdf", "metadata[projectId]": p, "size": "-5"},
            headers=h,
        ),
        400,
        "invalid_size",
    )
    assert_json_error(
        await client.get(
            "/s3/params",
            params={
                "filename": "a.pdf",
                "type": "application/pdf",
                "metadata[projectId]": p,
                "size": str(200 * 1024**2),
            },
            headers=h,
        ),
        400,
        "use_multipart",
    )
    assert_json_error(
        await client.get(
            "/s3/params",
            params={"filename": "a.pdf", "type": "application/pdf", "metadata[projectId]": str(uuid.uuid4())},
            headers=h,
        ),
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"],
    ids=["broken", "empty", "array", "string", "binary"],
)
async def test_malformed_json(client: httpx.AsyncClient, tenant: TenantFixture, body: bytes) -> None:
    h = {**tenant.auth(), "content-type": "application/json"}
    assert_json_error(await client.post("/s3/multipart", content=body, headers=h), 400, "invalid_json")
    mp = await create_multipart(client, tenant.auth(), tenant.projects[0])
    r = await client.post(
        f"/s3/multipart/{mp.upload_id}/complete", params={"key": mp.key}, content=body, headers=h
    )
    assert_json_error(r, 400, "invalid_json")
    assert_json_error(await client.post(f"/api/v1/uploads/{mp.id}/progress", content=body, headers=h), 400)


async def test_unknown_ids_and_bad_parts(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    h = tenant.auth()
    mp = await create_multipart(client, h, tenant.projects[0])
    q = {"key": mp.key}
    assert_json_error(await client.get("/s3/multipart/nope/1", params=q, headers=h), 404, "not_found")
    assert_json_error(await client.get(f"/s3/multipart/{mp.upload_id}", params={"key": "x"}, headers=h), 404)
    assert_json_error(await client.get(f"/s3/multipart/{mp.upload_id}/1", headers=h), 400, "missing_key")
    for bad in ("0", "10001", "abc", "-1"):
        assert_json_error(await client.get(f"/s3/multipart/{mp.upload_id}/{bad}", params=q, headers=h), 400)
    for bad in ("", "1,,2", "a", "0", ",".join(str(i) for i in range(1, 1003))):
        r = await client.get(
            f"/s3/multipart/{mp.upload_id}/batch", params={**q, "partNumbers": bad}, headers=h
        )
        assert_json_error(r, 400)
    complete = f"/s3/multipart/{mp.upload_id}/complete"
    for parts in (
        None,
        [],
        [{"PartNumber": "1", "ETag": "x"}],
        [{"PartNumber": 1}],
        [{"PartNumber": True, "ETag": "a"}],
    ):
        assert_json_error(await client.post(complete, params=q, json={"parts": parts}, headers=h), 400)
    # Out of order is sorted (clients list parts as they finish): these were never uploaded.
    unordered = [{"PartNumber": 2, "ETag": "a"}, {"PartNumber": 1, "ETag": "b"}]
    r = await client.post(complete, params=q, json={"parts": unordered}, headers=h)
    assert_json_error(r, 409, "part_missing")
    twice = [{"PartNumber": 1, "ETag": "a"}, {"PartNumber": 1, "ETag": "b"}]
    r = await client.post(complete, params=q, json={"parts": twice}, headers=h)
    assert_json_error(r, 409, "conflicting_parts")
    assert_json_error(await client.get(f"/api/v1/uploads/{uuid.uuid4()}", headers=h), 404)
    assert_json_error(await client.get("/api/v1/uploads/not-a-uuid", headers=h), 404)
    progress = f"/api/v1/uploads/{mp.id}/progress"
    for body in (
        {},
        {"bytes_done": -1},
        {"bytes_done": "5"},
        {"bytes_done": 1.5},
        {"bytes_done": 10 * 1024**4},
    ):
        assert_json_error(await client.post(progress, json=body, headers=h), 400)
    listing = f"/api/v1/projects/{tenant.projects[0]}/uploads"
    for params in ({"limit": "0"}, {"limit": "x"}, {"limit": "1000"}):
        assert_json_error(await client.get(listing, params=params, headers=h), 400)
    for params in ({"cursor": "!!!"}, {"cursor": "YWJj"}):  # opaque cursors: no such page
        assert_json_error(await client.get(listing, params=params, headers=h), 404, "invalid_cursor")
