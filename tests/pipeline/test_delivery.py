"""Delivery semantics: duplicates, poison messages and the dead-letter queue, the sweeper,
the outbox, and keys that try to reach another tenant's upload."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import orjson

from core.db import tenant_transaction
from core.events import Event, EventType
from core.status import UploadStatus
from devstack.clamd import EmbeddedClamd
from devstack.process import free_port
from processors.common.pipeline import process_record
from processors.common.runtime import Runtime
from processors.scan.handler import work as scan_work
from processors.sweeper.handler import sweep
from processors.worker import HANDLERS, LocalContext, Worker, sqs_event
from tests.conftest import Stack, TenantFixture
from tests.pipeline import samples
from tests.pipeline.helpers import (
    PipelineStack,
    create_upload,
    derivatives,
    derived_keys,
    isolated_stack,
    settled_steps,
    steps,
    upload_row,
    wait_status,
)


def _receive_one(p: PipelineStack, queue: str, key: str) -> dict[str, Any]:
    url = p.provisioned.queue_urls[queue]
    for _ in range(20):
        got = p.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        for m in got:
            if key in m["Body"]:
                return dict(m)
    raise AssertionError(f"no S3 event for {key} on {queue}")


async def test_same_s3_event_twice_gives_one_set_of_derivatives_and_one_event(
    stack: Stack, clamd: EmbeddedClamd, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    p = await asyncio.to_thread(isolated_stack, stack, "bpdup", clamd_url=clamd.url)
    runtime = Runtime(p.settings)
    try:
        ref = await create_upload(
            pool,
            p,
            tenant,
            file_name="foto.jpg",
            declared_type="image/jpeg",
            data=samples.rotated_jpeg_with_gps(),
        )
        for name, handler in HANDLERS.items():
            original = await asyncio.to_thread(_receive_one, p, name, ref.key)
            url = p.provisioned.queue_urls[name]
            # the same event delivered a second time, as SQS/EventBridge may
            await asyncio.to_thread(p.sqs.send_message, QueueUrl=url, MessageBody=original["Body"])
            duplicate = await asyncio.to_thread(_receive_one, p, name, ref.key)
            assert duplicate["MessageId"] != original["MessageId"]
            assert duplicate["Body"] == original["Body"]
            for message in (original, duplicate):
                event = sqs_event([message], p.provisioned.queue_arns[name], p.settings.aws_region)
                context = LocalContext(name, runtime=runtime, memory_limit_in_mb=512, timeout_seconds=60)
                response = await asyncio.to_thread(handler, event, context)
                assert response == {"batchItemFailures": []}
                await asyncio.to_thread(
                    p.sqs.delete_message, QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                )
            # a third delivery straight into the record logic: recognised, no work
            outcome = await asyncio.to_thread(process_record, runtime, original["Body"], "scan", scan_work)
            assert outcome == "duplicate"

        row = await wait_status(pool, ref, final={"ready", "failed", "quarantined"})
        assert row["status"] == "ready"
        assert set(await derivatives(pool, ref)) == {"thumb-200", "thumb-800"}
        assert [k.rsplit("/", 1)[-1] for k in derived_keys(p, ref)] == ["thumb-200.jpg", "thumb-800.jpg"]
        assert {name: s["attempts"] for name, s in (await settled_steps(pool, ref)).items()} == {
            "scan": 1,
            "metadata": 1,
            "image": 1,
            "document": 1,
        }
        events = await p.events.for_upload(ref.upload_id, until={"upload.completed", "processing.completed"})
        assert sorted(e.type.value for e in events) == ["processing.completed", "upload.completed"]
    finally:
        await asyncio.to_thread(runtime.close)


async def test_poison_message_is_dead_lettered_after_three_receives(
    stack: Stack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    """clamd unreachable: the scan raises (never "clean") on each of the three receives,
    SQS moves the message to the dead-letter queue, the watcher fails the upload."""
    unreachable = f"tcp://127.0.0.1:{free_port()}"
    p = await asyncio.to_thread(isolated_stack, stack, "bppoison", clamd_url=unreachable, visibility=1)
    worker = Worker(p.settings, poll_wait_seconds=1, sweep_interval_seconds=3600, drain_seconds=30)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.started.wait(), 60)
        ref = await create_upload(
            pool, p, tenant, file_name="foto.png", declared_type="image/png", data=samples.png_bytes()
        )
        row = await wait_status(pool, ref, final={"failed", "ready", "quarantined"}, within=120)
        assert (row["status"], row["reason_code"]) == ("failed", "processing_failed")
        scan = (await steps(pool, ref))["scan"]
        assert scan["state"] == "failed" and scan["reason_code"] == "processing_failed"
        assert scan["attempts"] == 3
        assert "dead-lettered" in scan["result"]["error"]
        # three receives of the original's event failed (the thumbnails' own events were ignored)
        assert worker.stats["scan"].failed == 3
        # The dead-letter handler fails the upload inside its invocation; the worker deletes
        # the message only after the handler returns: wait (bounded) for that delete.
        for _ in range(100):
            if worker.stats["scan-dlq"].deleted:
                break
            await asyncio.sleep(0.1)
        assert worker.stats["scan-dlq"].messages == 1 and worker.stats["scan-dlq"].deleted == 1
        # the failed upload's original is gone (the dead-letter handler deleted its version)
        listing = p.s3.list_object_versions(Bucket=p.settings.bucket, Prefix=ref.key)
        assert [v for v in listing.get("Versions", []) if v["Key"] == ref.key] == []
        events = await p.events.for_upload(ref.upload_id, until={"upload.failed"})
        failed = [e for e in events if e.type == EventType.UPLOAD_FAILED]
        assert len(failed) == 1 and failed[0].data["reason"] == "processing_failed"
        assert EventType.PROCESSING_COMPLETED not in [e.type for e in events]
    finally:
        stop.set()
        await asyncio.wait_for(task, 90)


def _s3_event(bucket: str, key: str) -> str:
    return orjson.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 10, "etag": "abc", "sequencer": "01"},
            },
        }
    ).decode()


async def test_a_key_under_another_tenant_cannot_reach_its_upload(
    pipeline: PipelineStack, pool: asyncpg.Pool, make_tenant: Any
) -> None:
    attacker, victim = await make_tenant(), await make_tenant()
    target = await create_upload(
        pool, pipeline, victim, file_name="x.jpg", declared_type="image/jpeg", data=b"", put=False
    )
    forged = (
        f"tenant-{attacker.tenant_id}/project-{target.project_id}/uploads/{target.upload_id}/original/x.jpg"
    )
    # and one under the victim's own prefix that is not the upload's object
    other_name = target.key.rsplit("/", 1)[0] + "/other.jpg"
    runtime = pipeline.worker.runtime
    for key in (forged, other_name):
        body = _s3_event(pipeline.settings.bucket, key)
        outcome = await asyncio.to_thread(process_record, runtime, body, "scan", scan_work)
        assert outcome.startswith("missing")
    assert await steps(pool, target) == {}
    assert (await upload_row(pool, target))["status"] == "uploading"


async def test_sweeper_fails_stuck_uploads_and_republishes_the_outbox(
    pipeline: PipelineStack, pool: asyncpg.Pool, tenant: TenantFixture
) -> None:
    stuck = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="a.jpg",
        declared_type="image/jpeg",
        data=b"",
        put=False,
        status="processing",
    )
    recent = await create_upload(
        pool,
        pipeline,
        tenant,
        file_name="b.jpg",
        declared_type="image/jpeg",
        data=b"",
        put=False,
        status="scanning",
    )
    lost = Event.new(
        EventType.PROCESSING_COMPLETED,
        tenant_id=tenant.tenant_id,
        project_id=recent.project_id,
        upload_id=recent.upload_id,
        user_id=tenant.users["field_worker"],
        status=UploadStatus.READY,
    )
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        await conn.execute(
            "UPDATE uploads SET updated_at = now() - interval '2 hours' WHERE upload_id = $1", stuck.upload_id
        )
        await conn.execute(
            "INSERT INTO pipeline_outbox (tenant_id, event_id, upload_id, event_type, payload, created_at) "
            "VALUES ($1, $2, $3, $4, $5, now() - interval '10 minutes')",
            tenant.tenant_id,
            lost.id,
            recent.upload_id,
            lost.type.value,
            lost.to_dict(),
        )
    report = await asyncio.to_thread(sweep, pipeline.worker.runtime)
    assert report.timed_out >= 1 and report.republished >= 1
    row = await upload_row(pool, stuck)
    assert (row["status"], row["reason_code"]) == ("failed", "processing_timeout")
    assert (await upload_row(pool, recent))["status"] == "scanning"
    events = await pipeline.events.for_upload(stuck.upload_id, until={"upload.failed"})
    assert [e.data["reason"] for e in events] == ["processing_timeout"]
    republished = await pipeline.events.for_upload(recent.upload_id, until={"processing.completed"})
    assert [e.id for e in republished] == [lost.id]
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        assert await conn.fetchval("SELECT published_at FROM pipeline_outbox WHERE event_id = $1", lost.id)


async def test_lambda_entry_point_builds_its_runtime_from_the_environment(
    pipeline: PipelineStack, monkeypatch: Any, capsys: Any
) -> None:
    """As deployed: no runtime in the context, settings from BUILDPEER_* variables; a bad
    record is reported in batchItemFailures while the good one succeeds."""
    from processors.common import runtime as runtime_module
    from processors.metadata.handler import handler

    s = pipeline.settings
    for name, value in {
        "DATABASE_URL": s.database_url,
        "AWS_ENDPOINT_URL": s.aws_endpoint_url,
        "STACK": s.stack,
        "BUCKET": s.bucket,
    }.items():
        monkeypatch.setenv(f"BUILDPEER_{name}", str(value))
    lazy = runtime_module.LazyRuntime()
    monkeypatch.setattr(runtime_module, "DEFAULT_RUNTIME", lazy)

    class AwsContext:  # what Lambda passes: no `runtime` attribute
        function_name = "bp-metadata"
        aws_request_id = "req-1"

    u = uuid.uuid4()
    good = _s3_event(s.bucket, f"tenant-{u}/project-{u}/uploads/{u}/original/a.jpg")
    event = sqs_event(
        [
            {"MessageId": "ok", "ReceiptHandle": "r1", "Body": good},
            {"MessageId": "bad", "ReceiptHandle": "r2", "Body": "{not json"},
        ],
        pipeline.provisioned.queue_arns["metadata"],
        s.aws_region,
    )
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as on Lambda
    try:
        response = await asyncio.to_thread(handler, event, AwsContext())
        assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
        assert lazy.get().settings.stack == s.stack
        # CloudWatch EMF on stdout: one line with this batch's counts.
        emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        assert len(emf) == 1, emf
        names = {m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert names == {"RecordsProcessed", "RecordsFailed", "BatchDuration"}
        assert emf[0]["processor"] == "metadata"
        assert emf[0]["RecordsFailed"] == [1.0] and emf[0]["RecordsProcessed"] == [1.0]  # EMF value arrays
    finally:
        await asyncio.to_thread(lazy.get().close)
