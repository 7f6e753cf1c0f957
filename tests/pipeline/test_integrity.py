"""Upload integrity on the processor side (issue 12): the processors pin the object version
they scanned and never process or keep another; the size recorded is what S3 stored; the
sha256 must equal the declared one; failed originals are deleted, quarantined ones tagged
and expired by lifecycle; clamd's limits fail a file instead of letting it become ready.

Everything runs through moto S3 → EventBridge → SQS → the worker, with a real clamd."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import orjson

from core import quarantine
from core.db import tenant_transaction
from core.events import EventType
from core.metrics import OVERWRITES_REJECTED
from processors.common.pipeline import process_record
from processors.document.handler import work as document_work
from processors.image.handler import work as image_work
from processors.metadata.handler import work as metadata_work
from processors.scan.handler import work as scan_work
from server.app import create_app
from tests.conftest import TenantFixture, _with_lifespan
from tests.pipeline import samples
from tests.pipeline.helpers import PipelineStack, UploadRef, create_upload, steps, wait_status

FINAL = {"ready", "failed", "quarantined"}


def versions(p: PipelineStack, key: str) -> list[dict[str, object]]:
    listing = p.s3.list_object_versions(Bucket=p.settings.bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def delete_markers(p: PipelineStack, key: str) -> list[dict[str, object]]:
    listing = p.s3.list_object_versions(Bucket=p.settings.bucket, Prefix=key)
    return [v for v in listing.get("DeleteMarkers", []) if v["Key"] == key]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 90) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.2)


def replayed_event(p: PipelineStack, key: str, put: dict[str, Any]) -> str:
    """The EventBridge "Object Created" body S3 sends for the object version ``put`` wrote."""
    return orjson.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {
                "bucket": {"name": p.settings.bucket},
                "object": {
                    "key": key,
                    "size": 68,
                    "etag": put["ETag"].strip('"'),
                    "version-id": put["VersionId"],
                    "sequencer": "02",
                },
            },
        }
    ).decode()


async def original_deleted(p: PipelineStack, ref: UploadRef) -> None:
    """A failed upload's original is deleted (every version: nothing of it is kept)."""

    async def gone() -> bool:
        return versions(p, ref.key) == [] and delete_markers(p, ref.key) == []

    await eventually(gone, "the failed upload's original deleted")


WORK = {"scan": scan_work, "metadata": metadata_work, "image": image_work, "document": document_work}


async def rejections(pool: asyncpg.Pool, ref: UploadRef) -> list[asyncpg.Record]:
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        return list(
            await conn.fetch("SELECT * FROM overwrite_rejections WHERE upload_id = $1", ref.upload_id)
        )


async def test_replayed_upload_after_ready_is_refused_and_the_scanned_bytes_stay(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """The single-upload URL replayed after ``ready`` with the EICAR file: the upload stays
    ready, the newer version is deleted, one ``overwrite_rejected`` is recorded (row, metric),
    and the key serves the scanned bytes again."""
    original = samples.png_bytes()
    ref = await create_upload(
        pool, pipeline, tenant, file_name="plano.png", declared_type="image/png", data=original
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    pinned = row["scanned_version_id"]
    assert pinned and row["scanned_etag"]
    assert [v["VersionId"] for v in versions(pipeline, ref.key)] == [pinned]
    before = OVERWRITES_REJECTED._value.get()

    replay = await asyncio.to_thread(
        pipeline.s3.put_object, Bucket=pipeline.settings.bucket, Key=ref.key, Body=samples.EICAR
    )
    assert replay["VersionId"] != pinned  # moto does not refuse the overwrite: the processors must

    async def refused() -> bool:
        gone = [v["VersionId"] for v in versions(pipeline, ref.key)] == [pinned]
        return gone and len(await rejections(pool, ref)) == 1

    await eventually(refused, "the newer version deleted and its refusal recorded")
    # every processor gets the event (and SQS may deliver it again): each refuses it, the
    # record and the count stay one
    body = replayed_event(pipeline, ref.key, replay)
    for name, work in WORK.items():
        outcome = await asyncio.to_thread(process_record, pipeline.worker.runtime, body, name, work)
        assert outcome == "overwrite_rejected", name
    assert delete_markers(pipeline, ref.key) == []
    served = pipeline.s3.get_object(Bucket=pipeline.settings.bucket, Key=ref.key)
    assert served["VersionId"] == pinned
    data = served["Body"].read()
    assert hashlib.sha256(data).hexdigest() == row["sha256"] == hashlib.sha256(original).hexdigest()

    after = await wait_status(pool, ref, final=FINAL)
    assert (after["status"], after["scanned_version_id"], after["sha256"]) == ("ready", pinned, row["sha256"])
    # the download route serves the scanned bytes: its presigned GET is pinned to the version
    app = create_app(pipeline.settings, run_components=False)
    async for api in _with_lifespan(app):
        answer = await api.get(f"/api/v1/uploads/{ref.upload_id}/original", headers=tenant.auth())
        assert answer.status_code == 200, answer.text
        assert answer.json()["version_id"] == pinned
        async with httpx.AsyncClient() as plain:
            downloaded = await plain.get(answer.json()["url"])
        assert downloaded.status_code == 200
        assert hashlib.sha256(downloaded.content).hexdigest() == row["sha256"]
    audit = await rejections(pool, ref)
    assert len(audit) == 1, "four processors got the event; one audit record"
    assert (audit[0]["version_id"], audit[0]["upload_status"]) == (replay["VersionId"], "ready")
    assert audit[0]["pinned_version_id"] == pinned
    assert OVERWRITES_REJECTED._value.get() - before == 1
    # nothing ran on the newer version: every step is still the pinned version's
    assert {s["object_version"] for s in (await steps(pool, ref)).values()} == {f"v:{pinned}"}
    events = await pipeline.events.for_upload(ref.upload_id, until={"processing.completed"})
    assert EventType.UPLOAD_FAILED not in [e.type for e in events]


async def test_overwrite_audit_rows_are_tenant_scoped(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture, make_tenant: Any
) -> None:
    """Another tenant's transaction sees none of the audit rows (RLS, not a WHERE clause)."""
    other_tenant = await make_tenant()
    ref = await create_upload(
        pool, pipeline, tenant, file_name="foto.png", declared_type="image/png", data=samples.png_bytes()
    )
    assert (await wait_status(pool, ref, final=FINAL))["status"] == "ready"
    await asyncio.to_thread(
        pipeline.s3.put_object, Bucket=pipeline.settings.bucket, Key=ref.key, Body=b"otra"
    )

    async def recorded() -> bool:
        return len(await rejections(pool, ref)) == 1

    await eventually(recorded, "the refusal recorded")
    async with tenant_transaction(pool, other_tenant.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM overwrite_rejections") == 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM overwrite_rejections WHERE upload_id = $1", ref.upload_id
            )
            == 0
        )


async def test_declared_sha256_match_is_verified(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    data = samples.text_layer_pdf()
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="acta.pdf",
        declared_type="application/pdf",
        data=data,
        declared_sha256=hashlib.sha256(data).hexdigest(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    assert row["sha256_verified"] is True
    assert row["sha256"] == hashlib.sha256(data).hexdigest()


async def test_nothing_declared_leaves_sha256_unverified(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="acta.pdf",
        declared_type="application/pdf",
        data=samples.text_layer_pdf(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready" and row["sha256_verified"] is None


async def test_declared_sha256_mismatch_fails_and_the_original_is_deleted(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    data = samples.text_layer_pdf()
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="acta.pdf",
        declared_type="application/pdf",
        data=data,
        declared_sha256=hashlib.sha256(b"another file").hexdigest(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "checksum_mismatch")
    assert row["sha256_verified"] is False
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    events = await pipeline.events.for_upload(ref.upload_id, until={"upload.failed"})
    assert [e.data["reason"] for e in events if e.type == EventType.UPLOAD_FAILED] == ["checksum_mismatch"]
    await original_deleted(pipeline, ref)


async def test_declared_size_other_than_stored_fails_with_size_mismatch(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """Declared 1,000 bytes, stored 1,000,198: the size recorded is S3's, the upload fails."""
    data = samples.png_bytes()
    data = data + b"\0" * (1_000_198 - len(data))
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="grande.png",
        declared_type="image/png",
        data=data,
        declared_size=1000,
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "size_mismatch")
    assert row["size_bytes"] == 1_000_198
    assert row["metadata"]["declared_size"] == 1000
    assert (await steps(pool, ref))["metadata"]["reason_code"] == "size_mismatch"
    await original_deleted(pipeline, ref)


async def test_declared_size_equal_to_stored_is_recorded(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    data = samples.png_bytes()
    ref = await create_upload(pool, pipeline, tenant, file_name="p.png", declared_type="image/png", data=data)
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready" and row["size_bytes"] == len(data) == row["metadata"]["size"]


async def test_document_nested_past_clamd_limits_fails_with_a_reason(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """A .docx carrying ZIPs nested deeper than clamd's MaxRecursion: clamd skips the bottom
    and says so (AlertExceedsMax); the upload fails, it does not become ready."""
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="informe.docx",
        declared_type=samples.DOCX_TYPE,
        data=samples.nested_docx(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "scan_limit_exceeded")
    scan = (await steps(pool, ref))["scan"]
    assert scan["result"]["alert"].startswith("Heuristics.Limits.Exceeded")
    await original_deleted(pipeline, ref)


async def test_shallow_document_is_ready(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """The same document nested within the limit is clean (the limit, not the shape, fails it)."""
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="informe.docx",
        declared_type=samples.DOCX_TYPE,
        data=samples.nested_docx(depth=3),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]


async def test_quarantined_original_is_tagged_and_the_bucket_expires_it(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """What moto enforces and keeps: versioning on, the pinned version tagged, the lifecycle
    rule on the tag (30 days). The deny policy is checked as a document in tests/infra."""
    ref = await create_upload(
        pool, pipeline, tenant, file_name="virus.txt", declared_type="text/plain", data=samples.EICAR
    )
    row = await wait_status(pool, ref, final={"quarantined"})
    bucket = pipeline.settings.bucket
    assert pipeline.s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    tags = pipeline.s3.get_object_tagging(Bucket=bucket, Key=ref.key, VersionId=row["scanned_version_id"])
    assert quarantine.tag_set()[0] in tags["TagSet"]
    rules = pipeline.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    rule = next(r for r in rules if r["ID"] == quarantine.LIFECYCLE_RULE_ID)
    assert rule["Filter"]["Tag"] == {"Key": quarantine.TAG_KEY, "Value": quarantine.TAG_VALUE}
    assert rule["Expiration"]["Days"] == 30 and rule["Status"] == "Enabled"
    assert [v["VersionId"] for v in versions(pipeline, ref.key)] == [row["scanned_version_id"]]
