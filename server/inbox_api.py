"""The inbox over HTTP: ``/api/v1/me/notifications`` (the caller's own items only).

Live changes go to the caller's ``user:<user_id>`` channel (see
:mod:`subscribers.inbox.service`): a new item as ``inbox.item``, every count change as
``inbox.unread``. The logic lives in ``subscribers.inbox``; this module speaks HTTP.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.db import tenant_transaction
from server import openapi
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate
from subscribers.inbox import store
from subscribers.inbox.service import Inbox, NoChannel, Presence, UserChannel

log = logging.getLogger(__name__)


class HubChannel:
    """The real-time hub's publishing and presence, looked up when used (the hub starts
    after the routes exist and is absent when this process runs no hub)."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def _node(self) -> Any:
        return getattr(self._state, "realtime", None)

    async def publish_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID, data: dict[str, Any]) -> None:
        from server.realtime.channels import Channel, Namespace

        node = self._node()
        if node is not None:
            await node.publish_data(tenant_id, Channel(Namespace.USER, user_id), orjson.dumps(data))

    async def online(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        from server.realtime.channels import Channel, Namespace

        node = self._node()
        if node is None:
            return False
        try:
            stats = await node.broker.presence_stats(Channel(Namespace.USER, user_id).broker_name(tenant_id))
        except Exception as exc:  # broker down: nobody counts as live, the push goes out now
            log.warning("presence unavailable; push not held", extra={"error": str(exc)})
            return False
        return bool(stats.num_clients > 0)


def inbox_for(state: Any) -> Inbox:
    """The app's inbox (one per app, made on first use)."""
    inbox: Inbox | None = getattr(state, "inbox", None)
    if inbox is None:
        channel: UserChannel = HubChannel(state) if hasattr(state, "pool") else NoChannel()
        inbox = Inbox(state.pool, channel)
        state.inbox = inbox
    return inbox


def presence_for(state: Any) -> Presence:
    return HubChannel(state)


_ITEM = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "kind": {
            "type": "string",
            "enum": ["upload.failed", "upload.quarantined", "processing.completed", "digest"],
        },
        "critical": {"type": "boolean"},
        "title": {"type": "string"},
        "body": {"type": "string"},
        "locale": {"type": "string"},
        "project_id": {"type": "string", "format": "uuid", "nullable": True},
        "upload_id": {"type": "string", "format": "uuid", "nullable": True},
        "data": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "read": {"type": "boolean"},
        "read_at": {"type": "string", "format": "date-time", "nullable": True},
    },
}
SCHEMAS = {
    "InboxItem": _ITEM,
    "InboxPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": openapi.ref("InboxItem")},
            "next_cursor": {"type": "string", "nullable": True},
            "unread": {"type": "integer"},
        },
    },
    "UnreadCount": {"type": "object", "properties": {"unread": {"type": "integer"}}},
}


def _item_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["item_id"])
    except ValueError:
        raise not_found("notification") from None


def _flag(value: str | None, name: str) -> bool:
    if value is None or value in ("0", "false", ""):
        return False
    if value in ("1", "true"):
        return True
    raise bad_request(f"{name}: expected 1 or 0", "invalid_query")


async def list_items(request: Request) -> Response:
    principal = await authenticate(request)
    unread_only = _flag(request.query_params.get("unread"), "unread")
    raw_limit = request.query_params.get("limit", str(store.DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= store.MAX_PAGE:
        raise bad_request(f"limit: expected 1..{store.MAX_PAGE}", "invalid_query")
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        try:
            items, cursor = await store.page(
                conn,
                principal.user_id,
                unread_only=unread_only,
                cursor=request.query_params.get("cursor") or None,
                limit=int(raw_limit),
            )
        except store.InvalidCursor as exc:
            # an opaque cursor the schema cannot check: the page it names does not exist
            raise ApiError(404, "invalid_cursor", str(exc)) from None
        unread = await store.unread_count(conn, principal.user_id)
    return JSONResponse({"items": items, "next_cursor": cursor, "unread": unread})


async def unread_count(request: Request) -> Response:
    principal = await authenticate(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        unread = await store.unread_count(conn, principal.user_id)
    return JSONResponse({"unread": unread})


async def read_item(request: Request) -> Response:
    principal = await authenticate(request)
    item_id = _item_id(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        changed = await store.mark_read(conn, principal.user_id, item_id)
        if changed is None:
            raise not_found("notification")
        unread = await store.unread_count(conn, principal.user_id)
    if changed:
        await inbox_for(request.app.state).count_changed(principal.tenant_id, principal.user_id, unread)
    return JSONResponse({"unread": unread})


async def read_all(request: Request) -> Response:
    principal = await authenticate(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        marked = await store.mark_all_read(conn, principal.user_id)
        unread = await store.unread_count(conn, principal.user_id)
    if marked:
        await inbox_for(request.app.state).count_changed(principal.tenant_id, principal.user_id, unread)
    return JSONResponse({"marked": marked, "unread": unread})


async def archive_item(request: Request) -> Response:
    principal = await authenticate(request)
    item_id = _item_id(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        if not await store.archive(conn, principal.user_id, item_id):
            raise not_found("notification")
        unread = await store.unread_count(conn, principal.user_id)
    await inbox_for(request.app.state).count_changed(principal.tenant_id, principal.user_id, unread)
    return Response(status_code=204)


_ID = openapi.path_param("item_id", description="The inbox item")
openapi.describe(
    list_items,
    "get",
    {
        "summary": "The caller's inbox, newest first (cursor pages stable under inserts)",
        "operationId": "listNotifications",
        "security": openapi.BEARER,
        "parameters": [
            openapi.query_param(
                "unread",
                {"type": "string", "enum": ["1", "0", "true", "false", ""]},
                description="1: unread only",
            ),
            openapi.query_param("cursor", description="next_cursor of the previous page"),
            openapi.query_param("limit", {"type": "integer", "minimum": 1, "maximum": store.MAX_PAGE}),
        ],
        "responses": {"200": openapi.json_response("InboxPage"), **openapi.errors(400, 401, 404)},
    },
    SCHEMAS,
)
openapi.describe(
    unread_count,
    "get",
    {
        "summary": "The caller's unread count (the bell's badge)",
        "operationId": "unreadNotifications",
        "security": openapi.BEARER,
        "responses": {"200": openapi.json_response("UnreadCount"), **openapi.errors(401)},
    },
    SCHEMAS,
)
openapi.describe(
    read_item,
    "post",
    {
        "summary": "Mark one of the caller's notifications read",
        "operationId": "readNotification",
        "security": openapi.BEARER,
        "parameters": [_ID],
        "responses": {"200": openapi.json_response("UnreadCount"), **openapi.errors(401, 404)},
    },
    SCHEMAS,
)
openapi.describe(
    read_all,
    "post",
    {
        "summary": "Mark all of the caller's notifications read",
        "operationId": "readAllNotifications",
        "security": openapi.BEARER,
        "responses": {
            "200": openapi.json_response(
                {
                    "type": "object",
                    "properties": {"marked": {"type": "integer"}, "unread": {"type": "integer"}},
                }
            ),
            **openapi.errors(401),
        },
    },
)
openapi.describe(
    archive_item,
    "delete",
    {
        "summary": "Archive one of the caller's notifications (it leaves the list)",
        "operationId": "archiveNotification",
        "security": openapi.BEARER,
        "parameters": [_ID],
        "responses": {"204": {"description": "Archived"}, **openapi.errors(401, 404)},
    },
)


class ItemIdConvertor(Convertor[str]):
    """An item id segment, never the sibling routes' names: ``DELETE .../read-all`` is a 405."""

    regex = r"(?!(?:read-all|unread-count)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("inboxitem", ItemIdConvertor())


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/me/notifications", list_items, methods=["GET"]),
        Route("/api/v1/me/notifications/unread-count", unread_count, methods=["GET"]),
        Route("/api/v1/me/notifications/read-all", read_all, methods=["POST"]),
        Route("/api/v1/me/notifications/{item_id}/read", read_item, methods=["POST"]),
        Route("/api/v1/me/notifications/{item_id:inboxitem}", archive_item, methods=["DELETE"]),
    ]
