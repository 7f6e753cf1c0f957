"""Notification preferences: push and digest on/off, push per event kind, quiet hours,
the digest's local hour and period (daily, or weekly on Mondays).

Pure validation and rules here, plus the two queries that load and store a user's row
(inside the caller's tenant transaction). Critical pushes — the uploader's own upload
failed or was quarantined — ignore quiet hours and cannot be muted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from core.settings import LOCALES
from subscribers import email_feedback
from subscribers.i18n import SUPPRESSION_TEXTS, translator

# Push kinds a user may switch off, and the ones they may not.
MUTABLE_PUSH_EVENTS = ("processing.completed", "upload.quarantined")
CRITICAL_PUSH_EVENTS = ("upload.failed",)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class PreferencesError(ValueError):
    """A preferences document that cannot be accepted; the message names the field."""


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        """Half-open [start, end); windows may cross midnight (22:00–07:00)."""
        moment = local.replace(second=0, microsecond=0, tzinfo=None)
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def to_document(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M")}


@dataclass(frozen=True, slots=True)
class Preferences:
    push_enabled: bool = True
    digest_enabled: bool | None = None  # None: by role (investors receive digests)
    push_events: Mapping[str, bool] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    digest_hour: int | None = None  # local hour 0-23; None: BUILDPEER_DIGEST_HOUR
    digest_frequency: str = "daily"  # or "weekly": Mondays, the seven local days before

    def wants_push(self, kind: str) -> bool:
        """Whether a *non-critical* push of ``kind`` is wanted (quiet hours aside)."""
        return self.push_enabled and self.push_events.get(kind, True)

    def wants_digest(self, role: str) -> bool:
        return self.digest_enabled if self.digest_enabled is not None else role == "investor"

    def quiet_at(self, moment: datetime, timezone: str) -> bool:
        if self.quiet_hours is None:
            return False
        return self.quiet_hours.contains(moment.astimezone(ZoneInfo(timezone)).time())


def _hhmm(value: Any, name: str) -> time:
    if not isinstance(value, str) or not (m := _HHMM.match(value)):
        raise PreferencesError(f"{name}: expected HH:MM (24-hour)")
    return time(int(m.group(1)), int(m.group(2)))


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise PreferencesError(f"{name}: expected true or false")
    return value


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """Time zone / locale changes carried by a preferences document (users table)."""

    timezone: str | None = None
    locale: str | None = None
    set_timezone: bool = False
    set_locale: bool = False


DIGEST_FREQUENCIES = ("daily", "weekly")
_FIELDS = {
    "push_enabled",
    "digest_enabled",
    "push_events",
    "quiet_hours",
    "timezone",
    "locale",
    "digest_hour",
    "digest_frequency",
}
_READ_ONLY = {
    "effective_timezone",
    "effective_locale",
    "critical_push_events",
    "digest_active",
    "digest_suppressed",
}
READ_ONLY_FIELDS = tuple(sorted(_READ_ONLY))  # accepted in an update and ignored (the API document)


def apply_update(current: Preferences, body: Any) -> tuple[Preferences, ProfileUpdate]:
    """``current`` changed by the fields present in ``body`` (absent fields are kept).

    Raises :class:`PreferencesError` for unknown fields, wrong types, an attempt to mute
    a critical push, or a bad time zone / locale / quiet-hours window.
    """
    if not isinstance(body, dict):
        raise PreferencesError("body: expected a JSON object")
    unknown = set(body) - _FIELDS - _READ_ONLY
    if unknown:
        raise PreferencesError(f"{sorted(unknown)[0]}: unknown field")
    prefs = current
    if "push_enabled" in body:
        prefs = replace(prefs, push_enabled=_bool(body["push_enabled"], "push_enabled"))
    if "digest_enabled" in body:
        value = body["digest_enabled"]
        prefs = replace(prefs, digest_enabled=None if value is None else _bool(value, "digest_enabled"))
    if "push_events" in body:
        events = body["push_events"]
        if not isinstance(events, dict):
            raise PreferencesError("push_events: expected an object of event → true/false")
        merged = dict(prefs.push_events)
        for key, value in events.items():
            name = f"push_events.{key}"
            if key in CRITICAL_PUSH_EVENTS:
                if _bool(value, name) is False:
                    raise PreferencesError(f"{name}: critical notifications cannot be muted")
                continue
            if key not in MUTABLE_PUSH_EVENTS:
                raise PreferencesError(f"{name}: unknown event (known: {', '.join(MUTABLE_PUSH_EVENTS)})")
            merged[key] = _bool(value, name)
        prefs = replace(prefs, push_events=merged)
    if "quiet_hours" in body:
        window = body["quiet_hours"]
        if window is None:
            prefs = replace(prefs, quiet_hours=None)
        elif isinstance(window, dict) and set(window) <= {"start", "end"}:
            start = _hhmm(window.get("start"), "quiet_hours.start")
            end = _hhmm(window.get("end"), "quiet_hours.end")
            # An empty window (start == end; the API document cannot forbid it) is no window.
            prefs = replace(prefs, quiet_hours=None if start == end else QuietHours(start, end))
        else:
            raise PreferencesError('quiet_hours: expected {"start": "HH:MM", "end": "HH:MM"} or null')
    if "digest_hour" in body:
        hour = body["digest_hour"]
        if hour is not None and (isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23):
            raise PreferencesError("digest_hour: expected a local hour 0-23 or null")
        prefs = replace(prefs, digest_hour=hour)
    if "digest_frequency" in body:
        frequency = body["digest_frequency"]
        if frequency not in DIGEST_FREQUENCIES:
            raise PreferencesError(f"digest_frequency: expected one of {', '.join(DIGEST_FREQUENCIES)}")
        prefs = replace(prefs, digest_frequency=frequency)
    profile = ProfileUpdate()
    if "timezone" in body:
        tz = body["timezone"]
        if tz is not None:
            if not isinstance(tz, str) or not tz:
                raise PreferencesError("timezone: expected an IANA time zone name or null")
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise PreferencesError(f"timezone: unknown time zone {tz!r}") from None
        profile = replace(profile, timezone=tz, set_timezone=True)
    if "locale" in body:
        locale = body["locale"]
        if locale is not None and locale not in LOCALES:
            raise PreferencesError(f"locale: expected one of {', '.join(LOCALES)} or null")
        profile = replace(profile, locale=locale, set_locale=True)
    return prefs, profile


def from_row(row: Mapping[str, Any] | None) -> Preferences:
    if row is None:
        return Preferences()
    quiet = None
    if row["quiet_hours_start"] is not None and row["quiet_hours_end"] is not None:
        quiet = QuietHours(row["quiet_hours_start"], row["quiet_hours_end"])
    events = row["push_events"] or {}
    return Preferences(
        push_enabled=row["push_enabled"],
        digest_enabled=row["digest_enabled"],
        push_events={k: bool(v) for k, v in events.items() if k in MUTABLE_PUSH_EVENTS},
        quiet_hours=quiet,
        digest_hour=row.get("digest_hour"),
        digest_frequency=row.get("digest_frequency") or "daily",
    )


async def load(conn: asyncpg.Connection, user_id: uuid.UUID) -> Preferences:
    row = await conn.fetchrow(
        "SELECT push_enabled, digest_enabled, push_events, quiet_hours_start, quiet_hours_end, "
        "  digest_hour, digest_frequency FROM notification_preferences WHERE user_id = $1",
        user_id,
    )
    return from_row(row)


async def store(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, prefs: Preferences
) -> None:
    quiet = prefs.quiet_hours
    await conn.execute(
        "INSERT INTO notification_preferences (tenant_id, user_id, push_enabled, digest_enabled, "
        "  push_events, quiet_hours_start, quiet_hours_end, digest_hour, digest_frequency) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (user_id) DO UPDATE SET push_enabled = EXCLUDED.push_enabled, "
        "  digest_enabled = EXCLUDED.digest_enabled, push_events = EXCLUDED.push_events, "
        "  quiet_hours_start = EXCLUDED.quiet_hours_start, quiet_hours_end = EXCLUDED.quiet_hours_end, "
        "  digest_hour = EXCLUDED.digest_hour, digest_frequency = EXCLUDED.digest_frequency, "
        "  updated_at = now()",
        tenant_id,
        user_id,
        prefs.push_enabled,
        prefs.digest_enabled,
        dict(prefs.push_events),
        quiet.start if quiet else None,
        quiet.end if quiet else None,
        prefs.digest_hour,
        prefs.digest_frequency,
    )


async def set_digest_enabled(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, enabled: bool
) -> bool:
    """Switch the digest on/off for one user; False when the user does not exist (in this tenant)."""
    if not await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id):
        return False
    await conn.execute(
        "INSERT INTO notification_preferences (tenant_id, user_id, digest_enabled) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_id) DO UPDATE SET digest_enabled = EXCLUDED.digest_enabled, updated_at = now()",
        tenant_id,
        user_id,
        enabled,
    )
    return True


async def document(conn: asyncpg.Connection, user_id: uuid.UUID, role: str) -> dict[str, Any]:
    """The GET /api/v1/me/preferences body."""
    prefs = await load(conn, user_id)
    row = await conn.fetchrow(
        "SELECT u.email, u.timezone, u.locale, t.timezone AS tenant_timezone, t.locale AS tenant_locale "
        "FROM users u JOIN tenants t USING (tenant_id) WHERE u.user_id = $1",
        user_id,
    )
    if row is None:
        raise PreferencesError("user: not found")
    suppression = await email_feedback.find(conn, row["email"])
    suppressed = None
    if suppression is not None:
        tr = translator(row["locale"] or row["tenant_locale"])
        suppressed = {
            "reason": suppression["reason"],
            "detail": suppression["detail"],
            "since": suppression["event_at"].isoformat(),
            "message": tr.gettext(SUPPRESSION_TEXTS[suppression["reason"]], email=row["email"]),
        }
    return {
        "push_enabled": prefs.push_enabled,
        "digest_enabled": prefs.digest_enabled,
        "digest_active": prefs.wants_digest(role) and suppressed is None,
        "digest_suppressed": suppressed,
        "digest_hour": prefs.digest_hour,
        "digest_frequency": prefs.digest_frequency,
        "push_events": {key: prefs.push_events.get(key, True) for key in MUTABLE_PUSH_EVENTS},
        "critical_push_events": list(CRITICAL_PUSH_EVENTS),
        "quiet_hours": prefs.quiet_hours.to_document() if prefs.quiet_hours else None,
        "timezone": row["timezone"],
        "locale": row["locale"],
        "effective_timezone": row["timezone"] or row["tenant_timezone"],
        "effective_locale": row["locale"] or row["tenant_locale"],
    }


async def update(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str, body: Any
) -> dict[str, Any]:
    """Apply a PUT body; returns the new document."""
    prefs, profile = apply_update(await load(conn, user_id), body)
    await store(conn, tenant_id, user_id, prefs)
    if profile.set_timezone:
        await conn.execute("UPDATE users SET timezone = $2 WHERE user_id = $1", user_id, profile.timezone)
    if profile.set_locale:
        await conn.execute("UPDATE users SET locale = $2 WHERE user_id = $1", user_id, profile.locale)
    return await document(conn, user_id, role)
