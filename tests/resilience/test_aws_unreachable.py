"""The AWS endpoint unreachable for a while (issue 8).

The server's events consumer and the pipeline worker reach moto through a TCP proxy.
The proxy closes its port (connection refused, open connections cut) for some seconds:
both consumers log, back off (their attempts are counted — no tight loop), stay alive,
and resume when the endpoint returns: an event published meanwhile is applied and an
object stored meanwhile is processed to ``ready``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
import orjson
import pytest

from core.db import tenant_transaction
from core.status import UploadStatus
from devstack.clamd import EmbeddedClamd
from server.status_cache import StatusCache
from tests.conftest import Stack, TenantFixture, insert_upload, running_worker
from tests.pipeline import samples
from tests.pipeline.helpers import create_upload, isolated_stack, wait_status
from tests.resilience.conftest import QUIET, sns_publish, status_event
from tests.resilience.proxy import TcpProxy

DOWN_SECONDS = 15
LONG_POLL_SECONDS = 1  # of both consumers here (QUIET, running_worker)


async def test_consumers_back_off_while_aws_is_unreachable_and_resume(
    stack: Stack,
    clamd: EmbeddedClamd,
    live_server: Any,
    pool: asyncpg.Pool,
    redis: Any,
    tenant: TenantFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="server.realtime.consumer")
    caplog.set_level(logging.WARNING, logger="processors.worker")
    # Resources are provisioned straight into moto; the consumers go through the proxy.
    p = await asyncio.to_thread(isolated_stack, stack, "bpfault-aws", clamd_url=clamd.url)
    moto = urlparse(stack.moto.url)
    proxy = TcpProxy((moto.hostname or "127.0.0.1", moto.port or 5000)).start()
    try:
        via_proxy = p.settings.replace(aws_endpoint_url=proxy.url, **QUIET)
        server = live_server(settings_override=via_proxy)
        async with running_worker(via_proxy):
            upload_id = await insert_upload(pool, tenant)
            proxy.refuse()
            down_at = time.monotonic()
            try:
                # A long poll already inside moto when the connections were cut may still take
                # messages whose response is then lost (they reappear after their visibility
                # timeout, as in SQS): publish once every such poll has ended.
                await asyncio.sleep(LONG_POLL_SECONDS + 1)
                # Meanwhile, straight into moto: an event for the hub and a photo for the pipeline.
                event = status_event(tenant, upload_id, UploadStatus.UPLOADED)
                await asyncio.to_thread(sns_publish, p.settings, p.provisioned, event)
                photo = await create_upload(
                    pool,
                    p,
                    tenant,
                    file_name="foto.jpg",
                    declared_type="image/jpeg",
                    data=samples.rotated_jpeg_with_gps(),
                )
                while time.monotonic() - down_at < DOWN_SECONDS:
                    poll = await asyncio.to_thread(
                        httpx.get,
                        f"{server.url}/api/v1/uploads/{upload_id}",
                        headers=tenant.auth(),
                        timeout=10,
                    )
                    assert poll.status_code == 200 and poll.json()["status"] == "uploading"
                    await asyncio.sleep(0.5)
                hub_attempts = caplog.text.count("events queue unavailable")
                worker_attempts = Counter(
                    getattr(r, "queue", "?")
                    for r in caplog.records
                    if r.name == "processors.worker" and "queue unavailable (retrying" in r.getMessage()
                )
            finally:
                proxy.forward()
            # Both noticed, both backed off: a handful of attempts in DOWN_SECONDS, not a spin
            # (each attempt is itself a few connection tries by botocore, with its own backoff).
            assert 1 <= hub_attempts <= 10, hub_attempts
            assert worker_attempts and set(worker_attempts) <= {
                "scan",
                "metadata",
                "image",
                "document",
                "scan-dlq",
                "metadata-dlq",
                "image-dlq",
                "document-dlq",
            }
            assert max(worker_attempts.values()) <= 6, worker_attempts

            # ... and both resume.
            row = await wait_status(pool, photo, final={"ready", "failed", "quarantined"}, within=45)
            assert row["status"] == "ready"
            deadline = time.monotonic() + 30
            while True:
                async with tenant_transaction(pool, tenant.tenant_id) as conn:
                    status = await conn.fetchval("SELECT status FROM uploads WHERE upload_id = $1", upload_id)
                if status == "uploaded":
                    break
                assert time.monotonic() < deadline, f"event not applied after the endpoint returned: {status}"
                await asyncio.sleep(0.2)
            cached = await StatusCache(redis).get_raw(tenant.tenant_id, upload_id)
            assert cached is not None and orjson.loads(cached)["status"] == "uploaded"
    finally:
        proxy.close()
