"""Checksums and originals through the whole system: the Uploads API and ``buildpeer upload``
in front, the worker's processors behind (moto over HTTP, clamd). moto does not check the
signed checksums, so a wrong declaration reaches the processors, which must fail it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from cli.uploader import Uploader
from core.keys import upload_prefix
from server.app import create_app
from tests.conftest import TenantFixture
from tests.pipeline import samples
from tests.pipeline.helpers import PipelineStack, UploadRef, wait_status

FINAL = {"ready", "failed", "quarantined"}


def ref_of(tenant: TenantFixture, upload_id: str, key: str) -> UploadRef:
    return UploadRef(tenant.tenant_id, tenant.projects[0], uuid.UUID(upload_id), key)


async def test_cli_upload_ends_verified_and_the_original_is_served_then_deleted(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture, live_server: Any, tmp_path: Path
) -> None:
    server = live_server(app=create_app(pipeline.settings, run_components=False))
    data = samples.text_layer_pdf()
    file = tmp_path / "Acta de obra Nº 7.pdf"
    file.write_bytes(data)

    def upload() -> Any:
        with Uploader(
            server.url, tenant.tokens["field_worker"], state_dir=tmp_path / "s", stream=io.StringIO()
        ) as up:
            return up.upload(file, str(tenant.projects[0]))

    result = await asyncio.to_thread(upload)
    row = await wait_status(pool, ref_of(tenant, result.id, result.key), final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    assert row["declared_sha256"] == result.sha256 == hashlib.sha256(data).hexdigest()
    # (Read from PostgreSQL: no events consumer runs here to refresh the status cache.)
    assert row["sha256_verified"] is True and row["sha256"] == result.sha256
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.auth()) as api:
        served = (await api.get(f"/api/v1/uploads/{result.id}/original")).json()
        async with httpx.AsyncClient() as plain:  # S3 gets no bearer token
            got = await plain.get(served["url"])
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == result.sha256
        assert served["version_id"] == row["scanned_version_id"]
        assert "filename*=UTF-8''Acta%20de%20obra%20N%C2%BA%207.pdf" in got.headers["content-disposition"]

        prefix = upload_prefix(tenant.tenant_id, tenant.projects[0], result.id)
        before = pipeline.s3.list_object_versions(Bucket=pipeline.settings.bucket, Prefix=prefix)
        assert any("/derived/" in v["Key"] for v in before.get("Versions", []))  # processors wrote some
        assert (await api.delete(f"/api/v1/uploads/{result.id}")).status_code == 204
    after = pipeline.s3.list_object_versions(Bucket=pipeline.settings.bucket, Prefix=prefix)
    assert after.get("Versions", []) == [] and after.get("DeleteMarkers", []) == []


async def test_single_upload_with_a_wrong_declared_sha256_fails_with_checksum_mismatch(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture, live_server: Any
) -> None:
    server = live_server(app=create_app(pipeline.settings, run_components=False))
    data = samples.png_bytes()
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.auth()) as api:
        r = await api.get(
            "/s3/params",
            params={
                "filename": "fachada.png",
                "type": "image/png",
                "size": len(data),
                "sha256": hashlib.sha256(b"otros bytes").hexdigest(),
                "metadata[projectId]": str(tenant.projects[0]),
            },
        )
        assert r.status_code == 200, r.text
        signed = r.json()
        async with httpx.AsyncClient() as plain:
            posted = await plain.post(
                signed["url"], data=signed["fields"], files={"file": ("fachada.png", data)}
            )
        assert posted.status_code == 204, posted.text  # moto does not check x-amz-checksum-sha256
        row = await wait_status(pool, ref_of(tenant, signed["id"], signed["fields"]["key"]), final=FINAL)
        assert (row["status"], row["reason_code"]) == ("failed", "checksum_mismatch")
        assert row["sha256_verified"] is False
        assert (await api.get(f"/api/v1/uploads/{signed['id']}/original")).status_code == 404
