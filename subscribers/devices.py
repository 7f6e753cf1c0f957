"""FCM device registrations: several per user, tenant-scoped (RLS), one row per token.

Registering a token that is already known in the tenant moves it to the caller (a
phone that changed hands or accounts) and refreshes its platform, locale and
``last_seen_at``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from subscribers.i18n import normalize_locale

PLATFORMS = ("android", "ios", "web")
MAX_TOKEN_LENGTH = 4096


class DeviceError(ValueError):
    """A registration that cannot be accepted; the message names the field."""


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    token: str
    platform: str
    locale: str | None

    @classmethod
    def parse(cls, body: Any) -> DeviceRegistration:
        if not isinstance(body, dict):
            raise DeviceError("body: expected a JSON object")
        unknown = set(body) - {"token", "platform", "locale"}
        if unknown:
            raise DeviceError(f"{sorted(unknown)[0]}: unknown field")
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise DeviceError("token: expected the FCM registration token")
        token = token.strip()
        if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise DeviceError(f"token: at most {MAX_TOKEN_LENGTH} characters, no spaces")
        platform = body.get("platform")
        if platform not in PLATFORMS:
            raise DeviceError(f"platform: expected one of {', '.join(PLATFORMS)}")
        raw_locale = body.get("locale")
        if raw_locale is not None and not isinstance(raw_locale, str):
            raise DeviceError("locale: expected a string such as es, pt-BR or en")
        locale = normalize_locale(raw_locale)
        if raw_locale and locale is None:
            raise DeviceError("locale: unsupported (es, pt-BR or en)")
        return cls(token, platform, locale)


async def register(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, device: DeviceRegistration
) -> tuple[dict[str, Any], bool]:
    """Upsert the token for ``user_id``; returns (device document, created)."""
    row = await conn.fetchrow(
        "INSERT INTO device_tokens (tenant_id, user_id, token, platform, locale) "
        "VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (tenant_id, token) DO UPDATE SET user_id = EXCLUDED.user_id, "
        "  platform = EXCLUDED.platform, locale = EXCLUDED.locale, last_seen_at = now() "
        "RETURNING device_id, platform, locale, created_at, (xmax = 0) AS created",
        tenant_id,
        user_id,
        device.token,
        device.platform,
        device.locale,
    )
    assert row is not None
    return (
        {
            "device_id": str(row["device_id"]),
            "platform": row["platform"],
            "locale": row["locale"],
            "created_at": row["created_at"].isoformat(),
        },
        bool(row["created"]),
    )


async def unregister(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    *,
    token: str | None = None,
    device_id: uuid.UUID | None = None,
) -> bool:
    """Delete one of the user's own devices (by token or id); False when there was none."""
    if token is not None:
        status = await conn.execute(
            "DELETE FROM device_tokens WHERE user_id = $1 AND token = $2", user_id, token
        )
    elif device_id is not None:
        status = await conn.execute(
            "DELETE FROM device_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )
    else:
        raise DeviceError("token: give the token (or device_id) to remove")
    return bool(status != "DELETE 0")


async def delete_device(conn: asyncpg.Connection, device_id: uuid.UUID) -> None:
    """FCM said the token is gone (UNREGISTERED / invalid)."""
    await conn.execute("DELETE FROM device_tokens WHERE device_id = $1", device_id)
