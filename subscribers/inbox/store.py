"""Inbox rows, always inside the caller's tenant transaction (RLS) and always filtered by
the user: nobody reads, marks or archives another user's items.

Pages are ordered by ``seq`` (an identity column, increasing with every insert), newest
first; the cursor is the last ``seq`` seen, so items inserted while a client pages never
shift, repeat or hide the older ones it has yet to fetch.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

RETENTION_DAYS = 90
MAX_PAGE = 100
DEFAULT_PAGE = 20


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NewItem:
    user_id: uuid.UUID
    source_key: str  # what it is about, once per user: an event id, "digest:daily:2026-03-09"
    kind: str
    title: str
    body: str
    locale: str
    critical: bool = False
    project_id: uuid.UUID | None = None
    upload_id: uuid.UUID | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


_COLUMNS = (
    "item_id, seq, user_id, kind, critical, project_id, upload_id, title, body, locale, data, "
    "created_at, read_at"
)


def document(row: Mapping[str, Any]) -> dict[str, Any]:
    """An item as the API and the ``user:`` channel show it."""
    return {
        "id": str(row["item_id"]),
        "kind": row["kind"],
        "critical": row["critical"],
        "title": row["title"],
        "body": row["body"],
        "locale": row["locale"],
        "project_id": str(row["project_id"]) if row["project_id"] else None,
        "upload_id": str(row["upload_id"]) if row["upload_id"] else None,
        "data": dict(row["data"] or {}),
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
        "read_at": row["read_at"].isoformat() if row["read_at"] else None,
    }


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError(raw)
        seq = int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursor("cursor: not a cursor this API returned") from None
    if seq < 1:
        raise InvalidCursor("cursor: not a cursor this API returned")
    return seq


async def add(conn: asyncpg.Connection, tenant_id: uuid.UUID, item: NewItem) -> dict[str, Any] | None:
    """Store the item; None when this user already has it (a redelivered event)."""
    row = await conn.fetchrow(
        "INSERT INTO inbox_items (tenant_id, user_id, source_key, kind, critical, project_id, "
        "  upload_id, title, body, locale, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        f"ON CONFLICT (user_id, source_key) DO NOTHING RETURNING {_COLUMNS}",
        tenant_id,
        item.user_id,
        item.source_key,
        item.kind,
        item.critical,
        item.project_id,
        item.upload_id,
        item.title,
        item.body,
        item.locale,
        dict(item.data),
    )
    return document(row) if row else None


async def find(conn: asyncpg.Connection, user_id: uuid.UUID, source_key: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM inbox_items WHERE user_id = $1 AND source_key = $2", user_id, source_key
    )
    return document(row) if row else None


async def unread_count(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM inbox_items WHERE user_id = $1 AND read_at IS NULL AND archived_at IS NULL",
        user_id,
    )
    return int(count or 0)


async def page(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    *,
    unread_only: bool = False,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> tuple[list[dict[str, Any]], str | None]:
    """(items newest first, next cursor or None at the end)."""
    before = decode_cursor(cursor) if cursor else None
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM inbox_items WHERE user_id = $1 AND archived_at IS NULL "
        "  AND ($2::bigint IS NULL OR seq < $2) AND (NOT $3 OR read_at IS NULL) "
        "ORDER BY seq DESC LIMIT $4",
        user_id,
        before,
        unread_only,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [document(r) for r in rows], (encode_cursor(rows[-1]["seq"]) if more and rows else None)


async def mark_read(conn: asyncpg.Connection, user_id: uuid.UUID, item_id: uuid.UUID) -> bool | None:
    """True when it became read now, False when it already was, None when not the user's."""
    row = await conn.fetchrow(
        "UPDATE inbox_items SET read_at = coalesce(read_at, now()) "
        "WHERE user_id = $1 AND item_id = $2 AND archived_at IS NULL "
        "RETURNING read_at = now() AS now_read",
        user_id,
        item_id,
    )
    if row is None:
        return None
    return bool(row["now_read"])


async def mark_all_read(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    status = await conn.execute(
        "UPDATE inbox_items SET read_at = now() "
        "WHERE user_id = $1 AND read_at IS NULL AND archived_at IS NULL",
        user_id,
    )
    return int(status.split()[-1])


async def archive(conn: asyncpg.Connection, user_id: uuid.UUID, item_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "UPDATE inbox_items SET archived_at = now() WHERE user_id = $1 AND item_id = $2 "
        "AND archived_at IS NULL",
        user_id,
        item_id,
    )
    return status != "UPDATE 0"


async def is_read(conn: asyncpg.Connection, user_id: uuid.UUID, source_key: str) -> bool:
    """Read or archived in the app (either way: the user has seen it)."""
    row = await conn.fetchrow(
        "SELECT read_at IS NOT NULL OR archived_at IS NOT NULL AS seen FROM inbox_items "
        "WHERE user_id = $1 AND source_key = $2",
        user_id,
        source_key,
    )
    return bool(row and row["seen"])


async def purge_older(conn: asyncpg.Connection, before: datetime) -> int:
    status = await conn.execute("DELETE FROM inbox_items WHERE created_at < $1", before)
    return int(status.split()[-1])
