"""Channel names (DESIGN §3) and who may subscribe to them.

``project:<project_id>``  admins of the tenant; field workers and investors who are members
``upload:<upload_id>``    whoever may read the upload's project
``user:<user_id>``        that user only
``tenant:<tenant_id>``    the tenant's admins

Every check runs inside the token's tenant (``tenant_transaction``): another tenant's
project or upload does not exist there, so it is simply denied. On the broker side the
tenant id is part of the channel, so two tenants never share a stream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from core.auth import Principal
from core.db import tenant_transaction

MAX_CHANNEL_LENGTH = 255


class Namespace(StrEnum):
    PROJECT = "project"
    UPLOAD = "upload"
    USER = "user"
    TENANT = "tenant"


class UnknownChannel(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Channel:
    namespace: Namespace
    id: uuid.UUID

    @property
    def name(self) -> str:
        """The name clients use."""
        return f"{self.namespace.value}:{self.id}"

    def broker_name(self, tenant_id: uuid.UUID) -> str:
        """The name on the broker: tenant first, so tenants never collide."""
        return f"{tenant_id}:{self.name}"


def parse_channel(name: str) -> Channel:
    if len(name) > MAX_CHANNEL_LENGTH or ":" not in name:
        raise UnknownChannel(name)
    prefix, _, ident = name.partition(":")
    try:
        namespace = Namespace(prefix)
        value = uuid.UUID(ident)
    except ValueError as exc:
        raise UnknownChannel(name) from exc
    if str(value) != ident:  # one spelling per channel: canonical lower-case UUIDs only
        raise UnknownChannel(name)
    return Channel(namespace, value)


def channel_for(namespace: Namespace, ident: uuid.UUID) -> Channel:
    return Channel(namespace, ident)


async def _may_read_project(conn: asyncpg.Connection, principal: Principal, project_id: uuid.UUID) -> bool:
    if principal.is_admin:
        return bool(await conn.fetchval("SELECT 1 FROM projects WHERE project_id = $1", project_id))
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2",
            project_id,
            principal.user_id,
        )
    )


async def may_subscribe(pool: asyncpg.Pool, principal: Principal, channel: Channel) -> bool:
    if channel.namespace is Namespace.USER:
        return channel.id == principal.user_id
    if channel.namespace is Namespace.TENANT:
        return principal.is_admin and channel.id == principal.tenant_id
    async with tenant_transaction(pool, principal.tenant_id, readonly=True) as conn:
        if channel.namespace is Namespace.PROJECT:
            return await _may_read_project(conn, principal, channel.id)
        project_id = await conn.fetchval("SELECT project_id FROM uploads WHERE upload_id = $1", channel.id)
        if project_id is None:
            return False
        return await _may_read_project(conn, principal, project_id)
