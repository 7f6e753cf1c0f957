"""SES feedback: bounce and complaint event records (SES's documented format, published
to the stack's SNS topic → SQS → the app's email-events consumer) suppress the address;
the next digest skips it and the preferences say why."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from core import resources
from core.db import tenant_transaction
from core.settings import Settings
from devstack.aws import client as aws_client
from devstack.smtp_sink import SmtpSink
from server import admin
from server.app import create_app
from subscribers.digest.senders import SmtpSender
from subscribers.digest.service import DigestService, S3Presigner
from subscribers.email_feedback import FeedbackHandler, InvalidFeedback, parse
from tests.conftest import TenantFixture
from tests.notifications.seed import seed_upload

DAY = date(2026, 4, 6)


def ses_record(
    kind: str, address: str, *, tenant_id: uuid.UUID | None, bounce_type: str = "Permanent"
) -> dict[str, Any]:
    """An event record as SES publishes it to SNS through a configuration set
    (docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html)."""
    mail: dict[str, Any] = {
        "timestamp": "2026-04-07T13:00:02.012Z",
        "source": "BuildPeer <no-reply@buildpeer.example>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/no-reply@buildpeer.example",
        "sendingAccountId": "123456789012",
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "destination": [address],
        "headersTruncated": False,
        "headers": [{"name": "To", "value": address}, {"name": "Subject", "value": "Resumen"}],
        "commonHeaders": {"from": ["BuildPeer <no-reply@buildpeer.example>"], "to": [address]},
    }
    if tenant_id is not None:
        mail["tags"] = {
            "ses:configuration-set": [resources.ses_configuration_set_name("bptest")],
            "ses:source-ip": ["192.0.2.0"],
            "tenant_id": [str(tenant_id)],
        }
    if kind == "Bounce":
        return {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2026-04-07T13:00:03.669Z",
                "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
                "reportingMTA": "dsn; mta.example.com",
            },
            "mail": mail,
        }
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": "2026-04-07T14:00:00.000Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000001",
            "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-04-07T14:00:00.000Z",
        },
        "mail": mail,
    }


async def _suppressed(pool: asyncpg.Pool, t: TenantFixture, email: str) -> str | None:
    async with tenant_transaction(pool, t.tenant_id) as conn:
        reason: str | None = await conn.fetchval(
            "SELECT reason FROM email_suppressions WHERE email = lower($1)", email
        )
    return reason


@pytest.mark.parametrize(
    ("kind", "reason", "detail", "words"),
    [
        ("Bounce", "bounce", "Permanent/General", "los mensajes a esta dirección rebotaron"),
        ("Complaint", "complaint", "abuse", "se marcó un resumen como spam"),
    ],
)
async def test_feedback_suppresses_the_next_digest_and_preferences_say_why(
    kind: str,
    reason: str,
    detail: str,
    words: str,
    stack: Any,
    settings: Settings,
    pool: asyncpg.Pool,
    redis: Redis,
    smtp_sink: SmtpSink,
    make_tenant: Any,
    client: httpx.AsyncClient,
) -> None:
    t: TenantFixture = await make_tenant()
    other: TenantFixture = await make_tenant()
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        investor = await conn.fetchval("SELECT email FROM users WHERE user_id = $1", t.users["investor"])
    # the same person is also an investor of another tenant, whose digests are not in question
    twin = await admin.create_user(pool, other.tenant_id, investor, "investor")
    await admin.add_member(pool, other.projects[0], twin["user_id"])
    for x in (t, other):
        await seed_upload(
            pool,
            x.tenant_id,
            x.projects[0],
            x.users["field_worker"],
            created_at=datetime(2026, 4, 6, 18, tzinfo=UTC),
        )
    app = create_app(
        settings.replace(digest_scheduler_enabled=False, events_wait_seconds=1, push_wait_seconds=1)
    )
    async with app.router.lifespan_context(app):
        record = ses_record(kind, investor.upper(), tenant_id=t.tenant_id)
        await asyncio.to_thread(
            aws_client(settings, "sns").publish,
            TopicArn=stack.provisioned.topic_arns[resources.EMAIL_EVENTS.name],
            Message=orjson.dumps(record).decode(),
        )
        for _ in range(400):
            if await _suppressed(pool, t, investor):
                break
            await asyncio.sleep(0.05)
    assert await _suppressed(pool, t, investor) == reason
    assert await _suppressed(pool, other, investor) is None  # the tag names the tenant
    service = DigestService(
        pool, redis, SmtpSender(smtp_sink.url), S3Presigner.from_settings(settings), settings
    )
    await service.run_day(DAY)
    # one digest, the other tenant's: the suppressed one was never built nor sent
    assert len(smtp_sink.mails_to(investor)) == 1
    async with tenant_transaction(pool, t.tenant_id, readonly=True) as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM digest_deliveries WHERE user_id = $1", t.users["investor"]
            )
            == 0
        )
    prefs = (await client.get("/api/v1/me/preferences", headers=t.auth("investor"))).json()
    assert prefs["digest_active"] is False
    assert prefs["digest_suppressed"]["reason"] == reason and prefs["digest_suppressed"]["detail"] == detail
    assert (
        words in prefs["digest_suppressed"]["message"] and investor in prefs["digest_suppressed"]["message"]
    )
    assert (await client.get("/api/v1/me/preferences", headers=other.auth("investor"))).json()[
        "digest_suppressed"
    ] is None


async def test_what_suppresses_and_what_does_not(pool: asyncpg.Pool, make_tenant: Any) -> None:
    a: TenantFixture = await make_tenant()
    b: TenantFixture = await make_tenant()
    shared = f"shared-{uuid.uuid4().hex[:6]}@example.com"
    for t in (a, b):
        await admin.create_user(pool, t.tenant_id, shared, "investor")
    handler = FeedbackHandler(pool)
    # a soft (transient) bounce and a delivery change nothing
    soft = ses_record("Bounce", shared, tenant_id=a.tenant_id, bounce_type="Transient")
    assert await handler.handle(orjson.dumps(soft).decode()) == 0
    delivery = {"eventType": "Delivery", "mail": soft["mail"], "delivery": {}}
    assert await handler.handle(orjson.dumps(delivery).decode()) == 0
    # a tag naming a tenant where the address is nobody suppresses nothing
    stranger = await make_tenant()
    assert (
        await handler.handle(
            orjson.dumps(ses_record("Bounce", shared, tenant_id=stranger.tenant_id)).decode()
        )
        == 0
    )
    # an identity notification (notificationType, no tags), inside an SNS envelope:
    # every tenant where the address is a user
    identity = ses_record("Complaint", shared, tenant_id=None)
    identity["notificationType"] = identity.pop("eventType")
    envelope = {"Type": "Notification", "MessageId": "m", "Message": orjson.dumps(identity).decode()}
    assert await handler.handle(orjson.dumps(envelope).decode()) == 2
    assert (
        await _suppressed(pool, a, shared) == "complaint"
        and await _suppressed(pool, b, shared) == "complaint"
    )
    for body in ("not json", "[]", '{"eventType": "Bounce", "mail": {}}'):
        with pytest.raises(InvalidFeedback):
            parse(body)
