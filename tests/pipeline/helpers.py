"""Test helpers: upload rows created directly in the database, objects put into the
isolated stack's bucket, waiting for a status, reading the published events."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import boto3

from core.db import tenant_transaction
from core.events import Event, parse_event
from core.keys import original_key, upload_prefix
from core.resources import PROCESSORS, queue_name
from core.settings import Settings
from devstack.aws import DUMMY_CREDENTIALS, Provisioned, provision
from tests.conftest import Stack, TenantFixture


@dataclass
class PipelineStack:
    settings: Settings
    provisioned: Provisioned
    s3: Any
    sqs: Any
    events: EventLog
    worker: Any = None


def isolated_stack(
    stack: Stack, name: str, *, clamd_url: str, visibility: int | None = None
) -> PipelineStack:
    settings = stack.settings.replace(stack=name, bucket=f"{name}-uploads", clamd_url=clamd_url)
    provisioned = provision(settings, visibility_override=visibility)
    kwargs = {
        "region_name": settings.aws_region,
        "endpoint_url": settings.aws_endpoint_url,
        **DUMMY_CREDENTIALS,
    }
    s3, sqs = boto3.client("s3", **kwargs), boto3.client("sqs", **kwargs)
    return PipelineStack(settings, provisioned, s3, sqs, EventLog(sqs, provisioned.queue_urls["events"]))


@dataclass
class EventLog:
    """Everything published to the stack's SNS topics, as the hub's `events` queue sees it."""

    sqs: Any
    queue_url: str
    seen: list[Event] = field(default_factory=list)

    def _drain(self, wait: int) -> int:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        messages = got.get("Messages", [])
        for m in messages:
            self.seen.append(parse_event(m["Body"]))
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    async def for_upload(self, upload_id: uuid.UUID, *, until: set[str], within: float = 60) -> list[Event]:
        """The upload's events, once those of types ``until`` have all arrived (and the
        queue has then been read empty, so late duplicates would show)."""
        deadline = time.monotonic() + within
        while True:
            mine = [e for e in self.seen if e.upload_id == upload_id]
            if until <= {e.type.value for e in mine}:
                while await asyncio.to_thread(self._drain, 1):
                    pass
                return [e for e in self.seen if e.upload_id == upload_id]
            if time.monotonic() > deadline:
                raise AssertionError(f"events {until} not all published; got {[e.type for e in mine]}")
            await asyncio.to_thread(self._drain, 1)


@dataclass(frozen=True)
class UploadRef:
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    upload_id: uuid.UUID
    key: str

    @property
    def derived_prefix(self) -> str:
        return upload_prefix(self.tenant_id, self.project_id, self.upload_id) + "derived/"


async def create_upload(
    pool: asyncpg.Pool,
    p: PipelineStack,
    tenant: TenantFixture,
    *,
    file_name: str,
    declared_type: str,
    data: bytes,
    put: bool = True,
    status: str = "uploading",
    declared_size: int | None = None,
    declared_sha256: str | None = None,
) -> UploadRef:
    """The upload row (as the Uploads API would create it) and, with ``put``, the object —
    whose S3 event starts the pipeline. The declared size is ``len(data)`` unless given."""
    upload_id = uuid.uuid4()
    project_id = tenant.projects[0]
    key = original_key(tenant.tenant_id, project_id, upload_id, file_name)
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        await conn.execute(
            """INSERT INTO uploads (tenant_id, upload_id, project_id, uploader_id, file_name, declared_type,
                 size_bytes, s3_key, status, declared_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            tenant.tenant_id,
            upload_id,
            project_id,
            tenant.users["field_worker"],
            file_name,
            declared_type,
            len(data) if declared_size is None else declared_size,
            key,
            status,
            declared_sha256,
        )
    if put:
        await asyncio.to_thread(
            p.s3.put_object, Bucket=p.settings.bucket, Key=key, Body=data, ContentType=declared_type
        )
    return UploadRef(tenant.tenant_id, project_id, upload_id, key)


async def upload_row(pool: asyncpg.Pool, ref: UploadRef) -> asyncpg.Record:
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", ref.upload_id)
    assert row is not None
    return row


async def wait_status(
    pool: asyncpg.Pool, ref: UploadRef, *, final: set[str], within: float = 90
) -> asyncpg.Record:
    deadline = time.monotonic() + within
    while True:
        row = await upload_row(pool, ref)
        if row["status"] in final:
            return row
        if time.monotonic() > deadline:
            async with tenant_transaction(pool, ref.tenant_id) as conn:
                steps = await conn.fetch("SELECT * FROM processing_steps WHERE upload_id = $1", ref.upload_id)
            raise AssertionError(f"upload still {row['status']}; steps: {[dict(s) for s in steps]}")
        await asyncio.sleep(0.2)


async def steps(pool: asyncpg.Pool, ref: UploadRef) -> dict[str, asyncpg.Record]:
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        rows = await conn.fetch("SELECT * FROM processing_steps WHERE upload_id = $1", ref.upload_id)
    return {r["processor"]: r for r in rows}


async def settled_steps(
    pool: asyncpg.Pool, ref: UploadRef, *, within: float = 60
) -> dict[str, asyncpg.Record]:
    """Every processor's step, once each has had its say. An upload is ``ready`` when its
    applicable steps are done, so a step that does not apply (the document step of a photo)
    may still be on its way: its skip lands after ``ready``."""
    everyone = {spec.name for spec in PROCESSORS}
    deadline = time.monotonic() + within
    while True:
        found = await steps(pool, ref)
        if set(found) == everyone and all(r["state"] != "running" for r in found.values()):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"steps not settled: {[dict(r) for r in found.values()]}")
        await asyncio.sleep(0.2)


async def derivatives(pool: asyncpg.Pool, ref: UploadRef) -> dict[str, asyncpg.Record]:
    async with tenant_transaction(pool, ref.tenant_id) as conn:
        rows = await conn.fetch("SELECT * FROM derivatives WHERE upload_id = $1", ref.upload_id)
    return {r["kind"]: r for r in rows}


def derived_keys(p: PipelineStack, ref: UploadRef) -> list[str]:
    listing = p.s3.list_objects_v2(Bucket=p.settings.bucket, Prefix=ref.derived_prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def get_bytes(p: PipelineStack, key: str) -> bytes:
    body: bytes = p.s3.get_object(Bucket=p.settings.bucket, Key=key)["Body"].read()
    return body


def queue_url(p: PipelineStack, name: str) -> str:
    return (
        p.provisioned.queue_urls.get(name)
        or p.sqs.get_queue_url(QueueName=queue_name(p.settings.stack, name))["QueueUrl"]
    )
