"""The push notifier's database side, always inside the event's tenant transaction:
the audience of an event, the devices of its targets, and the (event, device) claims
that make each send happen once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.events import Event
from core.status import UploadStatus
from subscribers.i18n import pick_locale
from subscribers.preferences import from_row
from subscribers.push.messages import UploadFacts
from subscribers.push.recipients import Person, PushKind

CLAIM_LEASE_SECONDS = 120  # a 'sending' claim older than this was abandoned (crash)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: uuid.UUID
    user_id: uuid.UUID
    token: str
    platform: str
    locale: str | None


@dataclass(frozen=True, slots=True)
class EventContext:
    facts: UploadFacts
    uploader: Person | None
    admins: list[Person]


_PEOPLE = (
    "SELECT u.user_id, u.role, COALESCE(u.timezone, t.timezone) AS timezone, "
    "  COALESCE(u.locale, t.locale) AS locale, p.push_enabled, p.digest_enabled, p.push_events, "
    "  p.quiet_hours_start, p.quiet_hours_end "
    "FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id "
    "LEFT JOIN notification_preferences p ON p.user_id = u.user_id "
)


def _person(row: asyncpg.Record) -> Person:
    prefs = from_row(row) if row["push_enabled"] is not None else from_row(None)
    return Person(row["user_id"], row["role"], row["timezone"], pick_locale(row["locale"]), prefs)


async def event_context(conn: asyncpg.Connection, event: Event, kind: PushKind) -> EventContext | None:
    upload = await conn.fetchrow(
        "SELECT u.uploader_id, u.file_name, u.reason_code, u.project_id, u.status, p.name AS project_name "
        "FROM uploads u JOIN projects p ON p.project_id = u.project_id WHERE u.upload_id = $1",
        event.upload_id,
    )
    if upload is None:
        # Not an upload of this tenant (or deleted): nobody to tell. Events name uploads
        # that already exist, so this is a forged, corrupted or very stale event.
        return None
    if upload["status"] == UploadStatus.DELETED:
        # Removed since the event was emitted (e.g. a late "ready"): no push about a file
        # that no longer exists.
        return None
    uploader_id, project_id = upload["uploader_id"], upload["project_id"]
    file_name, project_name = upload["file_name"], upload["project_name"]
    reason = event.data.get("reason") or event.data.get("reason_code") or upload["reason_code"]
    facts = UploadFacts(
        event_id=event.id,
        upload_id=event.upload_id,
        project_id=project_id,
        status=event.status.value,
        reason=str(reason) if reason else None,
        file_name=file_name,
        project_name=project_name,
    )
    if kind is PushKind.QUARANTINED:
        rows = await conn.fetch(_PEOPLE + "WHERE u.user_id = $1 OR u.role = 'admin'", uploader_id)
    else:
        rows = await conn.fetch(_PEOPLE + "WHERE u.user_id = $1", uploader_id)
    people = [_person(r) for r in rows]
    uploader = next((p for p in people if p.user_id == uploader_id), None)
    admins = [p for p in people if p.role == "admin"]
    return EventContext(facts, uploader, admins)


async def devices_of(conn: asyncpg.Connection, user_ids: Sequence[uuid.UUID]) -> list[Device]:
    rows = await conn.fetch(
        "SELECT device_id, user_id, token, platform, locale FROM device_tokens "
        "WHERE user_id = ANY($1::uuid[]) ORDER BY created_at, device_id",
        list(user_ids),
    )
    return [Device(r["device_id"], r["user_id"], r["token"], r["platform"], r["locale"]) for r in rows]


async def claim(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, event_id: uuid.UUID, devices: Sequence[Device]
) -> set[uuid.UUID]:
    """The devices this delivery must send to: never claimed, failed before, or whose
    claim was abandoned. A device already sent (or dropped) is not returned."""
    if not devices:
        return set()
    rows = await conn.fetch(
        "INSERT INTO push_deliveries (tenant_id, event_id, device_id, user_id, state) "
        "SELECT $1, $2, d, u, 'sending' FROM unnest($3::uuid[], $4::uuid[]) AS x(d, u) "
        "ON CONFLICT (event_id, device_id) DO UPDATE SET state = 'sending', "
        "  attempts = push_deliveries.attempts + 1, claimed_at = now(), updated_at = now(), error = NULL "
        "WHERE push_deliveries.state = 'failed' OR (push_deliveries.state = 'sending' "
        "  AND push_deliveries.claimed_at < now() - make_interval(secs => $5)) "
        "RETURNING device_id",
        tenant_id,
        event_id,
        [d.device_id for d in devices],
        [d.user_id for d in devices],
        CLAIM_LEASE_SECONDS,
    )
    return {r["device_id"] for r in rows}


async def record(
    conn: asyncpg.Connection,
    event_id: uuid.UUID,
    device_id: uuid.UUID,
    state: str,
    *,
    name: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE push_deliveries SET state = $3, message_name = $4, error = $5, updated_at = now() "
        "WHERE event_id = $1 AND device_id = $2",
        event_id,
        device_id,
        state,
        name,
        error,
    )


async def touch_device(conn: asyncpg.Connection, device_id: uuid.UUID) -> None:
    """A successful send: the token is alive (see :func:`prune_devices`)."""
    await conn.execute("UPDATE device_tokens SET last_success_at = now() WHERE device_id = $1", device_id)


async def prune_devices(conn: asyncpg.Connection, idle_days: int = 270) -> int:
    """Delete tokens with neither a successful send nor a re-registration in ``idle_days``."""
    status = await conn.execute(
        "DELETE FROM device_tokens WHERE greatest(last_seen_at, coalesce(last_success_at, last_seen_at)) "
        "  < now() - make_interval(days => $1)",
        idle_days,
    )
    return int(status.split()[-1])


async def purge_old(conn: asyncpg.Connection, before: datetime) -> int:
    status = await conn.execute("DELETE FROM push_deliveries WHERE updated_at < $1", before)
    return int(status.split()[-1])
