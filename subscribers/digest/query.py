"""Who receives a digest and what it covers — queries run inside one tenant's transaction.

A daily digest for local date D covers uploads created in [D 00:00, D+1 00:00) in the
recipient's time zone (user's, else the tenant's); a weekly one, sent on Mondays, covers
the seven local days before that Monday, [D 00:00, D+7 00:00) with D the previous Monday.
Both cover the recipient's projects (members: the projects they belong to; admins: every
project of the tenant). Each user picks the local hour (``digest_hour``, else
``BUILDPEER_DIGEST_HOUR``) and the period. Suppressed addresses (bounce, complaint) are
never recipients. ``deleted`` uploads are not counted, shown or listed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from subscribers.i18n import pick_locale

MAX_THUMBNAILS = 6
MAX_FAILURES = 20

_MIME = "coalesce(u.sniffed_type, u.declared_type)"
_KIND = (
    f"CASE WHEN {_MIME} LIKE 'image/%' AND {_MIME} NOT IN ('image/vnd.dwg', 'image/vnd.dxf') THEN 'image' "
    f"     WHEN {_MIME} IN ('application/pdf', 'application/msword') "
    f"       OR {_MIME} LIKE 'application/vnd.openxmlformats-officedocument.%' "
    f"       OR {_MIME} LIKE 'application/vnd.ms-%' OR {_MIME} LIKE 'text/%' THEN 'document' "
    "     ELSE 'other' END"
)

PERIOD_DAYS = {"daily": 1, "weekly": 7}

_RECIPIENTS = (
    "SELECT u.tenant_id, u.user_id, u.email, u.role, COALESCE(u.timezone, t.timezone) AS timezone, "
    "  COALESCE(u.locale, t.locale) AS locale, t.name AS tenant_name, p.digest_hour, "
    "  COALESCE(p.digest_frequency, 'daily') AS digest_frequency "
    "FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id "
    "LEFT JOIN notification_preferences p ON p.user_id = u.user_id "
    "WHERE COALESCE(p.digest_enabled, u.role = 'investor') "
    "  AND NOT EXISTS (SELECT 1 FROM email_suppressions s WHERE s.email = lower(u.email)) "
)


@dataclass(frozen=True, slots=True)
class Recipient:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    role: str
    timezone: str
    locale: str
    tenant_name: str
    digest_hour: int | None = None  # None: the deployment's BUILDPEER_DIGEST_HOUR
    frequency: str = "daily"  # or "weekly" (Mondays)

    def local_window(self, day: date, days: int = 1) -> tuple[datetime, datetime]:
        tz = ZoneInfo(self.timezone)
        return datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=days), time(0), tz)

    def send_time(self, default: time) -> time:
        return time(self.digest_hour) if self.digest_hour is not None else default

    def digest_day(self, now: datetime, send_at: time) -> date | None:
        """The first local day of the digest due at ``now``: yesterday for a daily digest,
        the Monday before for a weekly one (due on Mondays only) — once the recipient's
        send time has passed that local day; else None."""
        local = now.astimezone(ZoneInfo(self.timezone))
        if local.time() < self.send_time(send_at):
            return None
        if self.frequency == "weekly":
            if local.weekday() != 0:
                return None
            return local.date() - timedelta(days=7)
        return local.date() - timedelta(days=1)


def _recipient(row: asyncpg.Record) -> Recipient:
    return Recipient(
        row["tenant_id"],
        row["user_id"],
        row["email"],
        row["role"],
        row["timezone"],
        pick_locale(row["locale"]),
        row["tenant_name"],
        row["digest_hour"],
        row["digest_frequency"],
    )


async def recipients(conn: asyncpg.Connection) -> list[Recipient]:
    """Everyone in the (transaction's) tenant who receives digests."""
    return [_recipient(r) for r in await conn.fetch(_RECIPIENTS + "ORDER BY u.created_at, u.user_id")]


async def recipient(conn: asyncpg.Connection, user_id: uuid.UUID) -> Recipient | None:
    """The user, when they (still) receive digests."""
    row = await conn.fetchrow(_RECIPIENTS + "AND u.user_id = $1", user_id)
    return _recipient(row) if row else None


@dataclass
class ProjectDay:
    project_id: uuid.UUID
    name: str
    image: int = 0
    document: int = 0
    other: int = 0
    ready: int = 0
    failed: int = 0
    quarantined: int = 0
    in_progress: int = 0

    @property
    def uploads(self) -> int:
        return self.image + self.document + self.other


@dataclass(frozen=True, slots=True)
class Thumbnail:
    upload_id: uuid.UUID
    file_name: str
    project_name: str
    s3_key: str


@dataclass(frozen=True, slots=True)
class Failure:
    upload_id: uuid.UUID
    file_name: str
    project_name: str
    status: str
    reason: str | None


@dataclass
class DigestData:
    recipient: Recipient
    day: date
    projects: list[ProjectDay]
    thumbnails: list[Thumbnail] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    period: str = "daily"  # "weekly": ``day`` is the Monday, seven days are covered

    @property
    def days(self) -> int:
        return PERIOD_DAYS[self.period]

    @property
    def last_day(self) -> date:
        return self.day + timedelta(days=self.days - 1)

    def total(self, attribute: str) -> int:
        return sum(getattr(p, attribute) for p in self.projects)

    @property
    def uploads(self) -> int:
        return sum(p.uploads for p in self.projects)

    @property
    def empty(self) -> bool:
        return self.uploads == 0

    @property
    def more_failures(self) -> int:
        return self.total("failed") + self.total("quarantined") - len(self.failures)


async def collect(conn: asyncpg.Connection, who: Recipient, day: date, period: str = "daily") -> DigestData:
    start, end = who.local_window(day, PERIOD_DAYS[period])
    if who.role == "admin":
        projects = await conn.fetch("SELECT project_id, name FROM projects ORDER BY name, project_id")
    else:
        projects = await conn.fetch(
            "SELECT p.project_id, p.name FROM projects p "
            "JOIN project_members m ON m.project_id = p.project_id "
            "WHERE m.user_id = $1 ORDER BY p.name, p.project_id",
            who.user_id,
        )
    by_id = {r["project_id"]: ProjectDay(r["project_id"], r["name"]) for r in projects}
    ids = list(by_id)
    counts = await conn.fetch(
        f"SELECT u.project_id, {_KIND} AS kind, u.status, count(*) AS n FROM uploads u "
        "WHERE u.project_id = ANY($1::uuid[]) AND u.created_at >= $2 AND u.created_at < $3 "
        "  AND u.status <> 'deleted' "  # deleted uploads leave the digest entirely
        "GROUP BY 1, 2, 3",
        ids,
        start,
        end,
    )
    for row in counts:
        project = by_id[row["project_id"]]
        n = int(row["n"])
        setattr(project, row["kind"], getattr(project, row["kind"]) + n)
        status = row["status"]
        if status in ("ready", "failed", "quarantined"):
            setattr(project, status, getattr(project, status) + n)
        else:
            project.in_progress += n
    thumbs = await conn.fetch(
        "SELECT u.upload_id, u.file_name, p.name AS project_name, d.s3_key FROM uploads u "
        "JOIN projects p ON p.project_id = u.project_id "
        "JOIN derivatives d ON d.upload_id = u.upload_id AND d.kind = 'thumb-200' "
        "WHERE u.project_id = ANY($1::uuid[]) AND u.created_at >= $2 AND u.created_at < $3 "
        "  AND u.status = 'ready' ORDER BY u.created_at DESC, u.upload_id LIMIT $4",
        ids,
        start,
        end,
        MAX_THUMBNAILS,
    )
    failures = await conn.fetch(
        "SELECT u.upload_id, u.file_name, p.name AS project_name, u.status, u.reason_code FROM uploads u "
        "JOIN projects p ON p.project_id = u.project_id "
        "WHERE u.project_id = ANY($1::uuid[]) AND u.created_at >= $2 AND u.created_at < $3 "
        "  AND u.status IN ('failed', 'quarantined') ORDER BY u.created_at, u.upload_id LIMIT $4",
        ids,
        start,
        end,
        MAX_FAILURES,
    )
    ordered = sorted(by_id.values(), key=lambda p: (-p.uploads, p.name.lower()))
    return DigestData(
        recipient=who,
        day=day,
        projects=ordered,
        thumbnails=[
            Thumbnail(r["upload_id"], r["file_name"], r["project_name"], r["s3_key"]) for r in thumbs
        ],
        failures=[
            Failure(r["upload_id"], r["file_name"], r["project_name"], r["status"], r["reason_code"])
            for r in failures
        ],
        period=period,
    )
