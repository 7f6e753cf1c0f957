"""SES feedback → email suppressions.

The digest's SES configuration set publishes bounce and complaint events to SNS, which
delivers them to the ``email-events`` queue (``core.resources.EMAIL_EVENTS``). Each body
is SES's documented event record (``eventType``; ``notificationType`` for identity
feedback notifications), raw or inside an SNS envelope. A permanent bounce or a complaint
suppresses the address in the tenant named by the message's ``tenant_id`` tag (set at
send); without the tag (identity notifications carry none), in every tenant where the
address is a user. Transient bounces and other event types change nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from core.db import tenant_transaction

log = logging.getLogger(__name__)


class InvalidFeedback(ValueError):
    """Not an SES event record: left for the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class Suppression:
    email: str
    reason: str  # bounce | complaint
    detail: str | None
    diagnostic: str | None
    feedback_id: str | None
    event_at: datetime


@dataclass(frozen=True, slots=True)
class Feedback:
    suppressions: list[Suppression]
    tenant_id: uuid.UUID | None
    message_id: str | None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def _tag(mail: dict[str, Any], name: str) -> str | None:
    tags = mail.get("tags")
    if not isinstance(tags, dict):
        return None
    values = tags.get(name)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None


def parse(body: str) -> Feedback:
    """The suppressions an SQS body asks for (none for events that suppress nothing)."""
    try:
        record = orjson.loads(body)
        if isinstance(record, dict) and record.get("Type") == "Notification":
            record = orjson.loads(record.get("Message", ""))
    except orjson.JSONDecodeError as exc:
        raise InvalidFeedback("body: not JSON") from exc
    if not isinstance(record, dict):
        raise InvalidFeedback("body: expected an SES event record")
    kind = record.get("eventType") or record.get("notificationType")
    mail = record.get("mail")
    if not isinstance(kind, str) or not isinstance(mail, dict):
        raise InvalidFeedback("body: no eventType/notificationType and mail")
    raw_tenant = _tag(mail, "tenant_id")
    try:
        tenant_id = uuid.UUID(raw_tenant) if raw_tenant else None
    except ValueError:
        tenant_id = None
    message_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    found: list[Suppression] = []
    if kind == "Bounce":
        bounce = record.get("bounce")
        if not isinstance(bounce, dict) or not isinstance(bounce.get("bouncedRecipients"), list):
            raise InvalidFeedback("bounce: missing bouncedRecipients")
        if bounce.get("bounceType") == "Permanent":
            detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType', 'General')}"
            for r in bounce["bouncedRecipients"]:
                if isinstance(r, dict) and isinstance(r.get("emailAddress"), str):
                    found.append(
                        Suppression(
                            r["emailAddress"].strip().lower(),
                            "bounce",
                            detail,
                            str(r["diagnosticCode"])[:1000] if r.get("diagnosticCode") else None,
                            bounce.get("feedbackId"),
                            _timestamp(bounce.get("timestamp")),
                        )
                    )
    elif kind == "Complaint":
        complaint = record.get("complaint")
        if not isinstance(complaint, dict) or not isinstance(complaint.get("complainedRecipients"), list):
            raise InvalidFeedback("complaint: missing complainedRecipients")
        for r in complaint["complainedRecipients"]:
            if isinstance(r, dict) and isinstance(r.get("emailAddress"), str):
                found.append(
                    Suppression(
                        r["emailAddress"].strip().lower(),
                        "complaint",
                        complaint.get("complaintFeedbackType"),
                        None,
                        complaint.get("feedbackId"),
                        _timestamp(complaint.get("timestamp")),
                    )
                )
    return Feedback([s for s in found if "@" in s.email], tenant_id, message_id)


async def record(conn: asyncpg.Connection, tenant_id: uuid.UUID, s: Suppression) -> None:
    """Upsert (inside ``tenant_id``'s transaction): the latest event says why."""
    await conn.execute(
        "INSERT INTO email_suppressions "
        "  (tenant_id, email, reason, detail, diagnostic, feedback_id, event_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, email) DO UPDATE SET "
        "  reason = EXCLUDED.reason, detail = EXCLUDED.detail, diagnostic = EXCLUDED.diagnostic, "
        "  feedback_id = EXCLUDED.feedback_id, event_at = EXCLUDED.event_at",
        tenant_id,
        s.email,
        s.reason,
        s.detail,
        s.diagnostic,
        s.feedback_id,
        s.event_at,
    )


async def find(conn: asyncpg.Connection, email: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT reason, detail, event_at FROM email_suppressions WHERE email = lower($1)", email
    )
    return dict(row) if row else None


# --- lifting a suppression (tenant admins: the API and `buildpeer suppression`) ----------
MAX_ADDRESS = 320
DEFAULT_PAGE = 100
MAX_PAGE = 500


class InvalidAddress(ValueError):
    """Not an email address (no suppression can have it)."""


def parse_address(raw: str) -> str:
    """``raw`` as suppressions store it (lower case), or :class:`InvalidAddress`: one ``@``
    with something on both sides, no spaces or control characters, at most 320 characters."""
    address = raw.strip().lower()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or len(address) > MAX_ADDRESS
        or not address.isprintable()
        or any(c.isspace() for c in address)
    ):
        raise InvalidAddress(f"not an email address: {raw[:80]!r}")
    return address


async def suppressions(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, after: str | None = None, limit: int = DEFAULT_PAGE
) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's suppressions by address (inside its transaction: RLS and the filter both
    scope them), a page after the address ``after``; returns ``(items, next_cursor)``."""
    rows = await conn.fetch(
        "SELECT s.email, s.reason, s.detail, s.diagnostic, s.feedback_id, s.event_at, s.created_at, "
        "  ARRAY(SELECT u.user_id FROM users AS u "
        "    WHERE u.tenant_id = s.tenant_id AND lower(u.email) = s.email ORDER BY u.user_id) "
        "    AS user_ids "
        "FROM email_suppressions AS s WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.email > $2) "
        "ORDER BY s.email LIMIT $3",
        tenant_id,
        after,
        limit + 1,
    )
    items = [_document(r) for r in rows[:limit]]
    return items, (items[-1]["email"] if len(rows) > limit else None)


async def lift(conn: asyncpg.Connection, tenant_id: uuid.UUID, email: str) -> dict[str, Any] | None:
    """Delete the tenant's suppression of ``email`` (inside its transaction): the next digest
    goes to it again. Returns the row that was lifted, or None when there was none."""
    row = await conn.fetchrow(
        "DELETE FROM email_suppressions WHERE tenant_id = $1 AND email = $2 "
        "RETURNING email, reason, detail, diagnostic, feedback_id, event_at, created_at, "
        "  ARRAY(SELECT u.user_id FROM users AS u "
        "    WHERE u.tenant_id = $1 AND lower(u.email) = $2 ORDER BY u.user_id) "
        "    AS user_ids",
        tenant_id,
        email,
    )
    return _document(row) if row else None


def _document(row: asyncpg.Record) -> dict[str, Any]:
    doc = dict(row)
    for key in ("event_at", "created_at"):
        doc[key] = doc[key].isoformat()
    doc["user_ids"] = [str(u) for u in doc["user_ids"]]
    return doc


class FeedbackHandler:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _tenants(self, feedback: Feedback, email: str) -> list[uuid.UUID]:
        async with self._pool.acquire() as conn:
            tenants = [r[0] for r in await conn.fetch("SELECT tenants_with_email($1)", email)]
        if feedback.tenant_id is not None:
            # Our tag names the tenant that sent it; only where the address is a user.
            return [t for t in tenants if t == feedback.tenant_id]
        return tenants

    async def handle(self, body: str) -> int:
        """Record the body's suppressions; returns how many rows were written."""
        feedback = parse(body)
        written = 0
        for s in feedback.suppressions:
            for tenant_id in await self._tenants(feedback, s.email):
                async with tenant_transaction(self._pool, tenant_id) as conn:
                    await record(conn, tenant_id, s)
                written += 1
                log.info(
                    "email suppressed",
                    extra={"tenant_id": str(tenant_id), "reason": s.reason, "detail": s.detail},
                )
        return written
