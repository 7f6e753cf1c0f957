"""One upload end to end through every part of the system, observed from outside: one
trace id spans the API request, the processor invocations and the hub's WebSocket
publication (in-memory exporter), and ``/metrics`` (the internal listener) shows every named
metric moving.

Path: presign (API) → PUT to S3 → EventBridge → SQS → worker (scan, metadata, image) →
SNS → events consumer → Redis fan-out → a WebSocket client; SNS → push consumer → FCM.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from devstack.aws import provision
from devstack.clamd import EmbeddedClamd
from devstack.fcm_emulator import FcmEmulator
from devstack.process import free_port
from tests.conftest import Stack, TenantFixture, running_worker
from tests.realtime.wsclient import WsClient


class _Recorder(SpanProcessor):
    """Keeps finished spans while this module runs; a no-op for the rest of the session."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.active = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            self.exporter.export([span])


@pytest.fixture(scope="module")
def recorder() -> Iterator[_Recorder]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    rec = _Recorder()
    provider.add_span_processor(rec)
    yield rec
    rec.active = False
    rec.exporter.clear()


@pytest.fixture
def fcm(tmp_path: Path) -> Iterator[FcmEmulator]:
    emulator = FcmEmulator(tmp_path / "push", project_id="bp-obs").start()
    yield emulator
    emulator.stop()


def _metrics(metrics_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(metrics_url, timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1200, 900), (30, 120, 200)).save(out, "JPEG", quality=90)
    return out.getvalue()


async def _until(check: Any, what: str, seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_upload_is_one_trace_and_moves_every_metric(
    stack: Stack,
    clamd: EmbeddedClamd,
    tenant: TenantFixture,
    live_server: Any,
    fcm: FcmEmulator,
    recorder: _Recorder,
) -> None:
    settings: Settings = stack.settings.replace(
        stack="bpobs",
        bucket="bpobs-uploads",
        clamd_url=clamd.url,
        events_wait_seconds=1,
        fcm_credentials=str(fcm.credentials_path),
        fcm_endpoint=fcm.url,
        push_wait_seconds=1,
        metrics_port=free_port(),
    )
    await asyncio.to_thread(provision, settings)
    server = live_server(settings_override=settings)
    base, project = server.url, str(tenant.projects[0])
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    public = await asyncio.to_thread(httpx.get, f"{base}/metrics", timeout=10)
    assert public.status_code == 404  # never on the public port
    before = await asyncio.to_thread(_metrics, metrics_url)

    ws = await WsClient.open(base.replace("http", "ws") + "/connection/websocket")
    assert "connect" in await ws.connect(tenant.tokens["field_worker"])
    assert "subscribe" in await ws.call("subscribe", {"channel": f"project:{project}"})

    async with running_worker(settings), httpx.AsyncClient(base_url=base, timeout=20) as http:
        auth = tenant.auth("field_worker")
        r = await http.post(
            "/api/v1/devices", json={"token": "obs-device", "platform": "android"}, headers=auth
        )
        assert r.status_code in (200, 201), r.text
        body = _jpeg()
        params = await http.get(
            "/s3/params",
            params={
                "filename": "fachada.jpg",
                "type": "image/jpeg",
                "metadata[projectId]": project,
                "size": str(len(body)),
            },
            headers=auth,
        )
        assert params.status_code == 200, params.text
        signed = params.json()
        assert "x-amz-meta-traceparent" in signed["fields"]  # the trace rides on the object (policy field)
        put = await http.post(signed["url"], data=signed["fields"], files={"file": ("fachada.jpg", body)})
        assert put.status_code == 204, put.text
        upload_id = signed["id"]

        async def ready() -> bool:
            doc = (await http.get(f"/api/v1/uploads/{upload_id}", headers=auth)).json()
            assert doc["status"] not in ("failed", "quarantined"), doc
            return bool(doc["status"] == "ready")

        await _until(ready, "the upload to be ready")
        statuses = set()
        while "ready" not in statuses:  # the WebSocket client saw the publications
            push = (await ws.publications(1, wait=30))[0]
            statuses.add(push["pub"]["data"].get("status"))
        await _until(lambda: asyncio.sleep(0, result=bool(fcm.state.messages)), "the push", seconds=30)
        after = await asyncio.to_thread(_metrics, metrics_url)
    await ws.close()

    # One trace: API request → processors → events consumer → hub publication.
    spans = recorder.exporter.get_finished_spans()
    api = [s for s in spans if s.attributes and s.attributes.get("http.route") == "/s3/params"]
    assert api, [s.name for s in spans]
    trace_id = api[-1].context.trace_id
    in_trace = {s.name for s in spans if s.context.trace_id == trace_id}
    for name in ("process scan", "process metadata", "process image", "apply event", "publish"):
        assert name in in_trace, (name, sorted(in_trace))

    # Every named metric moved during this upload.
    def grew(name: str, **labels: str) -> bool:
        return _total(after, name, **labels) > _total(before, name, **labels)

    assert grew("buildpeer_http_request_duration_seconds_count", route="/s3/params")
    assert grew("buildpeer_upload_status_changes_total", status="ready")
    assert grew("buildpeer_publications_delivered_total")
    assert grew("buildpeer_fanout_latency_seconds_count")
    assert grew("buildpeer_sqs_messages_total", queue="scan", outcome="processed")
    assert grew("buildpeer_sqs_messages_total", queue="events")
    assert grew("buildpeer_processor_duration_seconds_count", processor="image")
    assert grew("buildpeer_notifications_total", channel="push", outcome="sent")
    # Read while our one client was connected: the gauge counts it, per tenant.
    assert _total(after, "buildpeer_websocket_connections", tenant=str(tenant.tenant_id)) == 1
