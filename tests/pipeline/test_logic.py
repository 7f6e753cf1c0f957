"""The processors' pure logic: sniffing, the status reducer, event parsing, images,
documents, and the clamd protocol against a real clamd."""

from __future__ import annotations

import io
import uuid

import orjson
import pytest
from PIL import Image

from core.status import ReasonCode, UploadStatus
from devstack.clamd import EmbeddedClamd
from devstack.process import free_port
from processors.common.outcome import Rejected
from processors.common.reducer import StepState, applicable_processors, derive_status
from processors.common.s3event import InvalidS3Event, object_ref
from processors.common.sniff import matches_declared, sniff
from processors.deadletter.handler import processor_of
from processors.document.logic import process_pdf
from processors.image.logic import make_thumbnails
from processors.scan import clamd
from processors.scan.logic import scan_stream, type_problem
from processors.worker import sqs_event
from tests.pipeline import samples


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00", "video/mp4"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
        (b"AC1032\x00\x00", "image/vnd.dwg"),
        (b"0\nSECTION\n2\nHEADER\n", "text/plain"),
        (b"\x00\x01\x02\x03binary", None),
        (b"", None),
    ],
)
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


def test_declared_type_must_match_the_bytes() -> None:
    assert matches_declared("image/jpeg", "image/jpeg")
    assert matches_declared("IMAGE/HEIF", "image/heic")
    assert matches_declared(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "application/zip"
    )
    assert not matches_declared("application/pdf", "image/png")
    assert not matches_declared("image/jpeg", None)
    allowed = ("image/jpeg", "application/pdf")
    mismatch = type_problem("application/pdf", allowed, "image/png")
    assert mismatch is not None and mismatch.reason == ReasonCode.TYPE_MISMATCH
    refused = type_problem("text/plain", allowed, "text/plain")
    assert refused is not None and refused.reason == ReasonCode.TYPE_NOT_ALLOWED
    assert type_problem("image/jpeg", allowed, "image/jpeg") is None


def _steps(**states: str) -> list[StepState]:
    out = []
    for name, value in states.items():
        state, _, reason = value.partition(":")
        out.append(StepState(name, state, reason or None))
    return out


def test_reducer() -> None:
    jpeg = "image/jpeg"
    assert applicable_processors(jpeg) == {"scan", "metadata", "image"}
    assert applicable_processors("application/pdf") == {"scan", "metadata", "document"}
    assert applicable_processors("video/mp4") == {"scan", "metadata"}
    assert derive_status(jpeg, []) is None
    assert derive_status(jpeg, _steps(metadata="done")).status == UploadStatus.UPLOADED  # type: ignore[union-attr]
    assert derive_status(jpeg, _steps(scan="running", metadata="done")).status == UploadStatus.SCANNING  # type: ignore[union-attr]
    assert derive_status(jpeg, _steps(scan="done", image="running")).status == UploadStatus.PROCESSING  # type: ignore[union-attr]
    # every applicable processor done but the scan: not ready
    assert (
        derive_status(jpeg, _steps(metadata="done", image="done", scan="running")).status
        == UploadStatus.SCANNING
    )  # type: ignore[union-attr]
    ready = derive_status(jpeg, _steps(scan="done", metadata="done", image="done", document="skipped"))
    assert ready is not None and ready.status == UploadStatus.READY
    failed = derive_status(jpeg, _steps(scan="done", metadata="done", image="failed:corrupt"))
    assert failed is not None and (failed.status, failed.reason) == (UploadStatus.FAILED, "corrupt")
    infected = derive_status(jpeg, _steps(scan="failed:infected", image="failed:type_mismatch"))
    assert infected is not None and (infected.status, infected.reason) == (
        UploadStatus.QUARANTINED,
        "infected",
    )


def _event(key: str, **obj: object) -> bytes:
    return orjson.dumps(
        {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": key, "size": 5, "etag": "e1", **obj}},
        }
    )


def test_s3_event_parsing() -> None:
    t, p, u = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    base = f"tenant-{t}/project-{p}/uploads/{u}"
    ref = object_ref(_event(f"{base}/original/a.jpg", sequencer="0A"))
    assert ref is not None and (ref.tenant_id, ref.project_id, ref.upload_id) == (t, p, u)
    assert ref.object_version == "e:e1:0A"
    assert ref.get_kwargs() == {"Bucket": "b", "Key": f"{base}/original/a.jpg", "IfMatch": '"e1"'}
    versioned = object_ref(_event(f"{base}/original/a.jpg", **{"version-id": "v7"}))
    assert versioned is not None and versioned.object_version == "v:v7"
    moto_style = orjson.loads(_event(f"{base}/original/a.jpg"))
    moto_style["detail"]["object"]["eTag"] = moto_style["detail"]["object"].pop("etag")
    assert (object_ref(moto_style) or ref).etag == "e1"
    assert object_ref(_event(f"{base}/derived/thumb-200.jpg")) is None
    assert object_ref(_event("somewhere/else.jpg")) is None
    with pytest.raises(InvalidS3Event):
        object_ref(b"not json")
    with pytest.raises(InvalidS3Event):
        object_ref(orjson.dumps({"source": "aws.ec2", "detail-type": "x"}))


def test_dead_letter_queue_names_map_to_processors() -> None:
    assert processor_of("arn:aws:sqs:us-east-1:1:bp-scan-dlq", "bp") == "scan"
    assert processor_of("arn:aws:sqs:us-east-1:1:bp-events-dlq", "bp") is None
    assert processor_of("arn:aws:sqs:us-east-1:1:other-scan-dlq", "bp") is None


def test_sqs_event_has_the_lambda_shape() -> None:
    event = sqs_event(
        [
            {
                "MessageId": "m1",
                "ReceiptHandle": "r1",
                "Body": "{}",
                "Attributes": {"ApproximateReceiveCount": "1"},
            }
        ],
        "arn:aws:sqs:us-east-1:1:q",
        "us-east-1",
    )
    (record,) = event["Records"]
    assert record["messageId"] == "m1" and record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:1:q" and record["md5OfBody"]


def test_thumbnails_from_png_with_alpha_and_a_wide_panorama() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (3000, 400), (255, 0, 0, 0)).save(out, format="PNG")
    result = make_thumbnails(io.BytesIO(out.getvalue()), max_pixels=10**8)
    sizes = {t.name: (t.width, t.height) for t in result.thumbnails}
    assert sizes == {"thumb-200.jpg": (200, 200), "thumb-800.jpg": (800, 107)}
    assert result.gps is None and result.captured_at is None
    small = Image.open(io.BytesIO(result.thumbnails[0].data))
    assert small.getpixel((100, 100)) == pytest.approx((255, 255, 255), abs=3)  # transparent → white


def test_decompression_bomb_and_corrupt_images_are_rejected() -> None:
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, format="PNG")
    with pytest.raises(Rejected) as bomb:
        make_thumbnails(io.BytesIO(out.getvalue()), max_pixels=20_000_000)
    assert bomb.value.reason == ReasonCode.DECOMPRESSION_BOMB
    with pytest.raises(Rejected) as corrupt:
        make_thumbnails(io.BytesIO(samples.corrupt_jpeg()), max_pixels=10**8)
    assert corrupt.value.reason == ReasonCode.CORRUPT
    with pytest.raises(Rejected) as garbage:
        make_thumbnails(io.BytesIO(b"\xff\xd8\xff" + b"\x00" * 100), max_pixels=10**8)
    assert garbage.value.reason == ReasonCode.CORRUPT


def test_heic_is_read_through_pillow_heif() -> None:
    import pillow_heif

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (0, 200, 0)).save(out, format="HEIF", quality=80)
    assert pillow_heif.is_supported(out.getvalue())
    assert sniff(out.getvalue()[:64]) == "image/heic"
    result = make_thumbnails(io.BytesIO(out.getvalue()), max_pixels=10**8)
    assert [(t.width, t.height) for t in result.thumbnails] == [(200, 200), (640, 480)]


def test_pdf_text_layer_and_corrupt_pdf() -> None:
    result = process_pdf(samples.text_layer_pdf("Hola mundo"), ocr_max_pages=0)
    assert (result.text.strip(), result.text_source, result.pages) == ("Hola mundo", "text_layer", 1)
    assert result.preview_width == 800
    with pytest.raises(Rejected) as corrupt:
        process_pdf(b"%PDF-1.4\n1 0 obj garbage", ocr_max_pages=1)
    assert corrupt.value.reason == ReasonCode.CORRUPT


def test_scanned_pdf_without_ocr_pages_has_no_text() -> None:
    result = process_pdf(samples.scanned_spanish_pdf(), ocr_max_pages=0)
    assert (result.text_source, result.ocr_pages) == ("none", 0)


def test_clamd_verdicts_from_a_real_clamd(clamd: EmbeddedClamd) -> None:
    assert "EICAR" in clamd.database or "test database" in clamd.database
    infected = scan_stream(
        iter([samples.EICAR[:10], samples.EICAR[10:]]), clamd_url=clamd.url, max_bytes=1000
    )
    assert infected.infected and (infected.signature or "").startswith("Eicar-Test-Signature")
    clean = scan_stream(iter([samples.png_bytes()]), clamd_url=clamd.url, max_bytes=10**6)
    assert not clean.infected and clean.sniffed_type == "image/png"
    with pytest.raises(Rejected) as big:
        scan_stream(iter([b"x" * 600, b"x" * 600]), clamd_url=clamd.url, max_bytes=1000)
    assert big.value.reason == ReasonCode.TOO_LARGE


def test_clamd_unreachable_is_never_clean() -> None:
    with pytest.raises(clamd.ClamdUnavailable):
        clamd.instream(f"tcp://127.0.0.1:{free_port()}", [b"hello"])
    with pytest.raises(clamd.ClamdError):
        clamd.parse_reply("INSTREAM size limit exceeded. ERROR")
    with pytest.raises(clamd.ClamdUnavailable):
        clamd.parse_reply("")
