"""The composition: the app starts the push consumer and digest scheduler; the CLI sends a day."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aioboto3
import asyncpg
import orjson
import pytest

from core.events import EventType
from core.settings import Settings
from core.status import UploadStatus
from devstack.fcm_emulator import FcmEmulator
from devstack.smtp_sink import SmtpSink
from server.app import aws_client_kwargs, create_app
from tests.conftest import TenantFixture
from tests.notifications.seed import add_device, event_for, seed_upload


async def test_app_runs_the_push_consumer(
    pool: asyncpg.Pool,
    push_settings: Settings,
    fcm: FcmEmulator,
    stack: Any,
    tenant: TenantFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server import notifications_api

    started: list[Any] = []
    original = notifications_api.components

    def spy(app: Any) -> list[Any]:
        found = original(app)
        started.extend(found)
        return found

    monkeypatch.setattr(notifications_api, "components", spy)
    t = tenant
    fw = t.users["field_worker"]
    token = await add_device(pool, t.tenant_id, fw, platform="ios", locale="en")
    upload = await seed_upload(pool, t.tenant_id, t.projects[0], fw, status="ready")
    event = event_for(
        EventType.PROCESSING_COMPLETED, t.tenant_id, t.projects[0], upload, fw, UploadStatus.READY
    )
    app = create_app(push_settings.replace(digest_interval_seconds=3600))
    async with app.router.lifespan_context(app):
        async with aioboto3.Session().client("sns", **aws_client_kwargs(push_settings)) as sns:
            await sns.publish(
                TopicArn=stack.provisioned.topic_arns["processing-completed"],
                Message=event.to_json().decode(),
            )
        for _ in range(300):
            if fcm.messages_to(token):
                break
            await asyncio.sleep(0.05)
    assert sorted(c.name for c in started) == ["digest-scheduler", "email-events", "push-notifier"]
    push = next(c for c in started if c.name == "push-notifier")
    assert push.error is None
    [message] = fcm.messages_to(token)
    assert message["notification"]["title"] == "File ready"
    assert message["apns"]["headers"]["apns-priority"] == "5"
    aps = message["apns"]["payload"]["aps"]
    assert "sound" not in aps and aps["thread-id"] == f"project-{t.projects[0]}" and aps["badge"] == 1


async def test_cli_digest_command(
    pool: asyncpg.Pool,
    settings: Settings,
    smtp_sink: SmtpSink,
    make_tenant: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import UTC, datetime

    from cli.main import main

    t: TenantFixture = await make_tenant()
    await seed_upload(
        pool,
        t.tenant_id,
        t.projects[0],
        t.users["field_worker"],
        created_at=datetime(2026, 2, 2, 18, 0, tzinfo=UTC),
    )
    env = {
        "BUILDPEER_DATABASE_URL": settings.database_url,
        "BUILDPEER_REDIS_URL": settings.redis_url,
        "BUILDPEER_AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "BUILDPEER_JWT_SECRET": settings.jwt_secret,
        "BUILDPEER_BUCKET": settings.bucket,
        "BUILDPEER_STACK": settings.stack,
        "BUILDPEER_SMTP_URL": smtp_sink.url,
        "BUILDPEER_VAR_DIR": str(uuid.uuid4()),  # no dev.env to pick up
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    code = await asyncio.to_thread(main, ["digest", "--date", "2026-02-02", "--json"])
    assert code == 0
    out = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["date"] == "2026-02-02" and out["results"].get("sent", 0) >= 1
    investor_mails = [m for m in smtp_sink.mails if m.parsed()["Subject"].startswith("Resumen del 2 feb: 1 ")]
    assert len(investor_mails) == 1
    code = await asyncio.to_thread(main, ["digest", "--date", "2026-02-02", "--json"])
    out = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["results"].get("sent", 0) == 0  # exactly once
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line on stderr, status 2
        await asyncio.to_thread(main, ["digest", "--date", "2026-02-31"])
    assert exit_info.value.code == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err
