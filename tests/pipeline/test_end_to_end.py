"""The pipeline end to end: objects put into moto S3 → EventBridge → SQS → the worker
running the real handlers → PostgreSQL + S3 derivatives + SNS events; real clamd and
real Tesseract."""

from __future__ import annotations

import io

import asyncpg
from PIL import Image

from core.events import EventType
from tests.conftest import TenantFixture
from tests.pipeline import samples
from tests.pipeline.helpers import (
    PipelineStack,
    create_upload,
    derivatives,
    derived_keys,
    get_bytes,
    settled_steps,
    steps,
    wait_status,
)

FINAL = {"ready", "failed", "quarantined"}


async def test_rotated_jpeg_with_gps_becomes_ready(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    source = samples.rotated_jpeg_with_gps()
    ref = await create_upload(
        pool, pipeline, tenant, file_name="Foto obra 1.JPG", declared_type="image/jpeg", data=source
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    assert row["sniffed_type"] == "image/jpeg"
    meta = row["metadata"]
    # GPS equals the source's EXIF within 1e-6, read back independently with Pillow
    gps_ifd = Image.open(io.BytesIO(source)).getexif().get_ifd(0x8825)
    lat = -sum(float(v) / d for v, d in zip(gps_ifd[2], (1, 60, 3600), strict=True))
    lon = -sum(float(v) / d for v, d in zip(gps_ifd[4], (1, 60, 3600), strict=True))
    assert abs(meta["gps"]["latitude"] - lat) < 1e-6
    assert abs(meta["gps"]["longitude"] - lon) < 1e-6
    assert abs(meta["gps"]["latitude"] - samples.GPS_LAT) < 1e-6
    assert meta["captured_at"] == "2024-05-01T10:30:00-05:00"
    assert (meta["width"], meta["height"]) == samples.UPRIGHT_SIZE

    rows = await derivatives(pool, ref)
    assert set(rows) == {"thumb-200", "thumb-800"}
    small = Image.open(io.BytesIO(get_bytes(pipeline, rows["thumb-200"]["s3_key"])))
    large = Image.open(io.BytesIO(get_bytes(pipeline, rows["thumb-800"]["s3_key"])))
    assert small.size == (200, 200)
    assert large.size == (533, 800)  # portrait: upright, fit inside 800x800
    assert (rows["thumb-800"]["width"], rows["thumb-800"]["height"]) == (533, 800)
    for thumb in (small, large):
        assert thumb.format == "JPEG"
        assert thumb.info.get("progressive") or thumb.info.get("progression")
        assert not thumb.getexif(), "derivatives carry no EXIF"
        assert "exif" not in thumb.info
    # upright: the red band is at the top of the 800 px thumbnail, blue at the bottom
    r, _, b = large.convert("RGB").getpixel((large.width // 2, 20))  # type: ignore[misc]
    assert r > 150 and b < 100
    r, _, b = large.convert("RGB").getpixel((large.width // 2, large.height - 20))  # type: ignore[misc]
    assert b > 150 and r < 100

    events = await pipeline.events.for_upload(
        ref.upload_id, until={"upload.completed", "processing.completed"}
    )
    kinds = [e.type for e in events]
    assert kinds.count(EventType.PROCESSING_COMPLETED) == 1
    assert kinds.count(EventType.UPLOAD_COMPLETED) == 1
    assert EventType.UPLOAD_FAILED not in kinds
    done = next(e for e in events if e.type == EventType.PROCESSING_COMPLETED)
    assert (done.tenant_id, done.project_id, done.user_id) == (
        tenant.tenant_id,
        tenant.projects[0],
        tenant.users["field_worker"],
    )
    assert done.status == "ready"
    assert {name: s["state"] for name, s in (await settled_steps(pool, ref)).items()} == {
        "scan": "done",
        "metadata": "done",
        "image": "done",
        "document": "skipped",
    }


async def test_scanned_spanish_pdf_is_read_by_ocr(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="informe escaneado.pdf",
        declared_type="application/pdf",
        data=samples.scanned_spanish_pdf(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert row["status"] == "ready", row["reason_code"]
    assert row["metadata"]["text_source"] == "ocr"
    rows = await derivatives(pool, ref)
    assert set(rows) == {"preview", "text"}
    text = get_bytes(pipeline, rows["text"]["s3_key"]).decode("utf-8").lower()
    for word in samples.SCANNED_WORDS:
        assert word in text, (word, text)
    preview = Image.open(io.BytesIO(get_bytes(pipeline, rows["preview"]["s3_key"])))
    assert preview.format == "PNG" and preview.width <= 800


async def test_pdf_with_text_layer_is_not_ocrd(
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
    assert row["status"] == "ready", row["reason_code"]
    assert row["metadata"]["text_source"] == "text_layer"
    assert row["metadata"]["ocr_pages"] == 0
    rows = await derivatives(pool, ref)
    assert get_bytes(pipeline, rows["text"]["s3_key"]).decode().strip() == samples.TEXT_LAYER_SENTENCE
    preview = Image.open(io.BytesIO(get_bytes(pipeline, rows["preview"]["s3_key"])))
    assert preview.size == (800, round(792 * 800 / 612)) or preview.width == 800


async def test_eicar_is_quarantined(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool, pipeline, tenant, file_name="eicar.txt", declared_type="text/plain", data=samples.EICAR
    )
    row = await wait_status(pool, ref, final={"quarantined"})
    assert row["reason_code"] == "infected"
    assert await derivatives(pool, ref) == {}
    assert derived_keys(pipeline, ref) == []
    tags = pipeline.s3.get_object_tagging(Bucket=pipeline.settings.bucket, Key=ref.key)["TagSet"]
    assert {"Key": "buildpeer-quarantine", "Value": "infected"} in tags
    scan = (await steps(pool, ref))["scan"]
    assert scan["state"] == "failed" and scan["result"]["signature"].startswith("Eicar-Test-Signature")
    events = await pipeline.events.for_upload(ref.upload_id, until={"upload.failed"})
    failed = [e for e in events if e.type == EventType.UPLOAD_FAILED]
    assert len(failed) == 1
    assert failed[0].status == "quarantined" and failed[0].data["reason"] == "infected"
    assert EventType.PROCESSING_COMPLETED not in [e.type for e in events]


async def test_infected_image_leaves_no_derivatives(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """EICAR declared as a JPEG: the image processor refuses the bytes (type) and the scan
    quarantines them, whichever finishes first; no derivative is left behind."""
    ref = await create_upload(
        pool, pipeline, tenant, file_name="eicar.jpg", declared_type="image/jpeg", data=samples.EICAR
    )
    row = await wait_status(pool, ref, final={"quarantined"})
    assert row["reason_code"] == "infected"
    assert await derivatives(pool, ref) == {}
    assert derived_keys(pipeline, ref) == []


async def test_corrupt_jpeg_fails_with_reason(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="cortada.jpg",
        declared_type="image/jpeg",
        data=samples.corrupt_jpeg(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "corrupt")
    image = (await steps(pool, ref))["image"]
    assert image["state"] == "failed" and "truncated" in image["result"]["error"]
    assert await derivatives(pool, ref) == {}
    events = await pipeline.events.for_upload(ref.upload_id, until={"upload.failed"})
    failed = [e for e in events if e.type == EventType.UPLOAD_FAILED]
    assert len(failed) == 1 and failed[0].data["reason"] == "corrupt"


async def test_png_declared_as_pdf_is_a_type_mismatch(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="plano.pdf",
        declared_type="application/pdf",
        data=samples.png_bytes(),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "type_mismatch")
    assert (await steps(pool, ref))["scan"]["reason_code"] == "type_mismatch"
    assert await derivatives(pool, ref) == {}
    events = await pipeline.events.for_upload(ref.upload_id, until={"upload.failed"})
    assert [e.data["reason"] for e in events if e.type == EventType.UPLOAD_FAILED] == ["type_mismatch"]


async def test_password_protected_pdf_fails_as_encrypted(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    ref = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="contrato.pdf",
        declared_type="application/pdf",
        data=samples.text_layer_pdf(password_protected=True),
    )
    row = await wait_status(pool, ref, final=FINAL)
    assert (row["status"], row["reason_code"]) == ("failed", "encrypted")
    assert await derivatives(pool, ref) == {}
    events = await pipeline.events.for_upload(ref.upload_id, until={"upload.failed"})
    assert [e.data["reason"] for e in events if e.type == EventType.UPLOAD_FAILED] == ["encrypted"]
