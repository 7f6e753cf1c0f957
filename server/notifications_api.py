"""HTTP routes of notifications (devices, preferences, one-click unsubscribe, and for tenant
admins the email suppressions; the inbox's are in :mod:`server.inbox_api`) and the wiring of
the push consumer, the digest scheduler and the SES feedback consumer into the app. The logic
lives in ``subscribers``; this module only speaks HTTP and composes."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import available_timezones

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.auth import Principal
from core.db import ping, tenant_transaction
from core.settings import Settings
from server import inbox_api, openapi
from server.errors import ApiError, bad_request, not_found
from server.permissions import authenticate, require_admin
from subscribers import devices, email_feedback, preferences
from subscribers.digest.render import render_unsubscribe_page
from subscribers.digest.scheduler import DigestScheduler
from subscribers.digest.senders import EmailSender, sender_for
from subscribers.digest.service import DigestService, S3Presigner
from subscribers.email_events_consumer import EmailEventsConsumer
from subscribers.email_feedback import FeedbackHandler
from subscribers.housekeeping import Housekeeping
from subscribers.i18n import pick_locale
from subscribers.push.consumer import PushConsumer
from subscribers.push.fcm import FcmClient
from subscribers.push.notifier import PushNotifier
from subscribers.unsubscribe import InvalidUnsubscribeToken, signing_key, subscriber, verify_token

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
ONE_CLICK = "List-Unsubscribe=One-Click"


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes")
    if not body:
        raise bad_request("a JSON body is required", "invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("body is not valid JSON", "invalid_json") from None


# --- devices ----------------------------------------------------------------------------
DEVICE_SCHEMAS = {
    "DeviceRegistration": {
        "type": "object",
        "required": ["token", "platform"],
        "additionalProperties": False,
        "properties": {
            "token": {
                "type": "string",
                "minLength": 1,
                "maxLength": 4096,
                "description": "FCM registration token",
            },
            "platform": {"type": "string", "enum": list(devices.PLATFORMS)},
            "locale": {"type": "string", "enum": ["es", "pt-BR", "en", None], "nullable": True},
        },
    },
    "Device": {
        "type": "object",
        "properties": {
            "device_id": {"type": "string", "format": "uuid"},
            "platform": {"type": "string"},
            "locale": {"type": "string", "nullable": True},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
}


async def register_device(request: Request) -> Response:
    principal = await authenticate(request)
    try:
        registration = devices.DeviceRegistration.parse(await _json(request))
    except devices.DeviceError as exc:
        raise bad_request(str(exc), "invalid_device") from None
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        document, created = await devices.register(conn, principal.tenant_id, principal.user_id, registration)
    return JSONResponse(document, 201 if created else 200)


async def remove_device(request: Request) -> Response:
    principal = await authenticate(request)
    token = request.query_params.get("token")
    if token is None and await request.body():
        body = await _json(request)
        token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise bad_request("token: give the FCM token to remove (JSON body or ?token=)", "invalid_device")
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        removed = await devices.unregister(conn, principal.user_id, token=token)
    if not removed:
        raise not_found("device")
    return Response(status_code=204)


openapi.describe(
    register_device,
    "post",
    {
        "summary": "Register an FCM device token for the caller (idempotent per token)",
        "operationId": "registerDevice",
        "security": openapi.BEARER,
        "requestBody": openapi.json_body("DeviceRegistration"),
        "responses": {
            "201": openapi.json_response("Device", "Registered"),
            "200": openapi.json_response("Device", "Already known; refreshed"),
            **openapi.errors(400, 401, 413),
        },
    },
    DEVICE_SCHEMAS,
)
openapi.describe(
    remove_device,
    "delete",
    {
        "summary": "Remove one of the caller's device tokens",
        "operationId": "removeDevice",
        "security": openapi.BEARER,
        "parameters": [
            openapi.query_param(
                "token",
                {"type": "string", "minLength": 1, "maxLength": 4096},
                required=True,
                description='The FCM token (a JSON body {"token"} is also read when the query has none)',
            )
        ],
        "responses": {"204": {"description": "Removed"}, **openapi.errors(400, 401, 404)},
    },
)


# --- preferences ------------------------------------------------------------------------
PREFERENCES_SCHEMA: dict[str, dict[str, Any]] = {
    "Preferences": {
        "type": "object",
        "properties": {
            "push_enabled": {"type": "boolean"},
            "digest_enabled": {
                "type": "boolean",
                "nullable": True,
                "description": "null: by role (investors)",
            },
            "digest_active": {"type": "boolean", "readOnly": True},
            "push_events": {
                "type": "object",
                "properties": {k: {"type": "boolean"} for k in preferences.MUTABLE_PUSH_EVENTS},
                "additionalProperties": False,
            },
            "critical_push_events": {"type": "array", "items": {"type": "string"}, "readOnly": True},
            "quiet_hours": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                    "end": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                },
                "required": ["start", "end"],
                "additionalProperties": False,
            },
            "timezone": {  # the IANA names this server's tzdata knows
                "type": "string",
                "nullable": True,
                "enum": [*sorted(available_timezones()), None],
            },
            "locale": {"type": "string", "nullable": True, "enum": ["es", "pt-BR", "en", None]},
            "effective_timezone": {"type": "string", "readOnly": True},
            "effective_locale": {"type": "string", "readOnly": True},
        },
    }
}


_WRITABLE = {
    name: schema
    for name, schema in PREFERENCES_SCHEMA["Preferences"]["properties"].items()
    if not schema.get("readOnly")
}
PREFERENCES_SCHEMA["PreferencesUpdate"] = {
    "type": "object",
    "description": "Fields absent are kept; read-only fields of a GET answer sent back are ignored",
    "properties": {
        **_WRITABLE,
        "digest_hour": {"type": "integer", "minimum": 0, "maximum": 23, "nullable": True},
        "digest_frequency": {"type": "string", "enum": list(preferences.DIGEST_FREQUENCIES)},
        **{name: {} for name in preferences.READ_ONLY_FIELDS},
    },
    "additionalProperties": False,
}


async def get_preferences(request: Request) -> Response:
    principal = await authenticate(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        try:
            document = await preferences.document(conn, principal.user_id, principal.role.value)
        except preferences.PreferencesError:
            raise not_found("user") from None
    return JSONResponse(document)


async def put_preferences(request: Request) -> Response:
    principal = await authenticate(request)
    body = await _json(request)
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        if not await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", principal.user_id):
            raise not_found("user")
        try:
            document = await preferences.update(
                conn, principal.tenant_id, principal.user_id, principal.role.value, body
            )
        except preferences.PreferencesError as exc:
            raise bad_request(str(exc), "invalid_preferences") from None
    return JSONResponse(document)


openapi.describe(
    get_preferences,
    "get",
    {
        "summary": "The caller's notification preferences",
        "operationId": "getPreferences",
        "security": openapi.BEARER,
        "responses": {"200": openapi.json_response("Preferences"), **openapi.errors(401, 404)},
    },
    PREFERENCES_SCHEMA,
)
openapi.describe(
    put_preferences,
    "put",
    {
        "summary": "Change notification preferences (fields absent from the body are kept)",
        "operationId": "putPreferences",
        "security": openapi.BEARER,
        "requestBody": openapi.json_body("PreferencesUpdate"),
        "responses": {"200": openapi.json_response("Preferences"), **openapi.errors(400, 401, 404, 413)},
    },
    PREFERENCES_SCHEMA,
)


# --- one-click unsubscribe (RFC 8058) ---------------------------------------------------
def _token_request(request: Request) -> Any:
    settings: Settings = request.app.state.settings
    return verify_token(signing_key(settings), request.query_params.get("token", ""))


async def unsubscribe_page(request: Request) -> Response:
    """GET shows a confirmation (link scanners must not unsubscribe anyone)."""
    try:
        unsub = _token_request(request)
    except InvalidUnsubscribeToken:
        return HTMLResponse(render_unsubscribe_page("invalid", locale="es"), 403)  # a forged link
    async with tenant_transaction(request.app.state.pool, unsub.tenant_id, readonly=True) as conn:
        who = await subscriber(conn, unsub)
    if who is None:
        return HTMLResponse(render_unsubscribe_page("invalid", locale="es"), 404)
    action = f"{request.url.path}?token={request.query_params['token']}"
    page = render_unsubscribe_page(
        "confirm", locale=pick_locale(who["locale"]), email=who["email"], action=action
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click: ``POST`` with body ``List-Unsubscribe=One-Click``."""
    body = (await request.body())[:4096].decode(errors="replace")
    fields = parse_qs(body)
    if fields.get("List-Unsubscribe") != ["One-Click"]:
        raise bad_request(f"body must be {ONE_CLICK} (RFC 8058)", "invalid_unsubscribe")
    try:
        unsub = _token_request(request)
    except InvalidUnsubscribeToken as exc:
        raise ApiError(403, "invalid_token", f"unsubscribe token: {exc}") from None
    async with tenant_transaction(request.app.state.pool, unsub.tenant_id) as conn:
        who = await subscriber(conn, unsub)
        if who is None or not await preferences.set_digest_enabled(
            conn, unsub.tenant_id, unsub.user_id, False
        ):
            raise not_found("subscriber")
    log.info("digest unsubscribed", extra={"user_id": str(unsub.user_id)})
    page = render_unsubscribe_page("done", locale=pick_locale(who["locale"]), email=who["email"])
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


_TOKEN_PARAM = openapi.query_param(
    "token", required=True, description="Signed unsubscribe token from the email"
)
openapi.describe(
    unsubscribe_page,
    "get",
    {
        "summary": "Unsubscribe confirmation page (does not unsubscribe)",
        "operationId": "unsubscribePage",
        "parameters": [_TOKEN_PARAM],
        "responses": {
            "200": {"description": "Confirmation page", "content": {"text/html": {}}},
            "403": {"description": "Invalid link", "content": {"text/html": {}}},
            "404": {"description": "Unknown subscriber", "content": {"text/html": {}}},
        },
    },
)
openapi.describe(
    unsubscribe,
    "post",
    {
        "summary": "RFC 8058 one-click unsubscribe from the daily digest",
        "operationId": "unsubscribe",
        "parameters": [_TOKEN_PARAM],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["List-Unsubscribe"],
                        "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "Unsubscribed", "content": {"text/html": {}}},
            **openapi.errors(400, 403, 404),
        },
    },
)


# --- email suppressions (tenant admins) ------------------------------------------------
SUPPRESSION_SCHEMAS: dict[str, Any] = {
    "EmailSuppression": {
        "type": "object",
        "properties": {
            "email": {"type": "string"},
            "reason": {"type": "string", "enum": ["bounce", "complaint"]},
            "detail": {
                "type": "string",
                "nullable": True,
                "description": "bounce type/subtype or complaint feedback type",
            },
            "diagnostic": {"type": "string", "nullable": True, "description": "the remote MTA's code"},
            "feedback_id": {"type": "string", "nullable": True, "description": "SES feedbackId"},
            "event_at": {"type": "string", "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "user_ids": {
                "type": "array",
                "items": {"type": "string", "format": "uuid"},
                "description": "the tenant's users with this address",
            },
        },
    },
    "EmailSuppressionPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": openapi.ref("EmailSuppression")},
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
}


async def _admin(request: Request) -> Principal:
    principal = await authenticate(request)
    require_admin(principal)
    return principal


async def list_suppressions(request: Request) -> Response:
    principal = await _admin(request)
    raw_limit = request.query_params.get("limit", str(email_feedback.DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= email_feedback.MAX_PAGE:
        raise bad_request(f"limit: expected 1..{email_feedback.MAX_PAGE}", "invalid_query")
    cursor = request.query_params.get("cursor") or None
    if cursor is not None:
        try:
            cursor = email_feedback.parse_address(cursor)
        except email_feedback.InvalidAddress:
            # an opaque cursor the schema cannot check: the page it names does not exist
            raise ApiError(
                404, "invalid_cursor", "cursor: give the next_cursor of the previous page"
            ) from None
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        items, next_cursor = await email_feedback.suppressions(
            conn, principal.tenant_id, after=cursor, limit=int(raw_limit)
        )
    return JSONResponse({"items": items, "next_cursor": next_cursor})


async def lift_suppression(request: Request) -> Response:
    """The address gets digests again (after it was fixed); logged as an admin action."""
    principal = await _admin(request)
    try:
        email = email_feedback.parse_address(request.path_params["email"])
    except email_feedback.InvalidAddress as exc:
        raise bad_request(str(exc), "invalid_email") from None
    async with tenant_transaction(request.app.state.pool, principal.tenant_id) as conn:
        lifted = await email_feedback.lift(conn, principal.tenant_id, email)
    if lifted is None:
        raise not_found("email suppression")
    log.info(
        "email suppression lifted",
        extra={
            "tenant_id": str(principal.tenant_id),
            "email": email,
            "reason": lifted["reason"],
            "by_user_id": str(principal.user_id),
            "via": "api",
        },
    )
    return Response(status_code=204)


openapi.describe(
    list_suppressions,
    "get",
    {
        "summary": "The tenant's suppressed email addresses (SES bounces and complaints), by address",
        "description": "Tenant admins only.",
        "operationId": "listEmailSuppressions",
        "security": openapi.BEARER,
        "parameters": [
            openapi.query_param("cursor", {"type": "string"}, description="next_cursor of the previous page"),
            openapi.query_param(
                "limit", {"type": "integer", "minimum": 1, "maximum": email_feedback.MAX_PAGE}
            ),
        ],
        "responses": {
            "200": openapi.json_response("EmailSuppressionPage"),
            **openapi.errors(400, 401, 403, 404),
        },
    },
    SUPPRESSION_SCHEMAS,
)
openapi.describe(
    lift_suppression,
    "delete",
    {
        "summary": "Lift the suppression of an address: its digests are sent again",
        "description": "Tenant admins only. Another tenant's suppressions are not found (404).",
        "operationId": "liftEmailSuppression",
        "security": openapi.BEARER,
        "parameters": [
            openapi.path_param(
                "email",
                {"type": "string", "format": "email", "maxLength": email_feedback.MAX_ADDRESS},
                "The suppressed address (case does not matter)",
            )
        ],
        "responses": {"204": {"description": "Lifted"}, **openapi.errors(400, 401, 403, 404)},
    },
)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/devices", register_device, methods=["POST"]),
        Route("/api/v1/devices", remove_device, methods=["DELETE"]),
        Route("/api/v1/me/preferences", get_preferences, methods=["GET"]),
        Route("/api/v1/me/preferences", put_preferences, methods=["PUT"]),
        Route("/api/v1/unsubscribe", unsubscribe_page, methods=["GET"]),
        Route("/api/v1/unsubscribe", unsubscribe, methods=["POST"]),
        Route("/api/v1/email-suppressions", list_suppressions, methods=["GET"]),
        Route("/api/v1/email-suppressions/{email}", lift_suppression, methods=["DELETE"]),
        *inbox_api.routes(),
    ]


# --- components -------------------------------------------------------------------------
class PushComponent:
    """FCM client + notifier + SQS ``push`` consumer, started and stopped together."""

    name = "push-notifier"

    def __init__(self, app: Starlette) -> None:
        settings: Settings = app.state.settings
        assert settings.fcm_credentials
        self._client = FcmClient(
            settings.fcm_credentials,
            endpoint=settings.fcm_endpoint,
            max_attempts=settings.push_max_attempts,
            max_retry_after=settings.push_max_retry_after_seconds,
        )
        self._consumer = PushConsumer(
            app.state.sqs,
            PushNotifier(
                app.state.pool,
                self._client,
                settings,
                inbox=inbox_api.inbox_for(app.state),
                presence=inbox_api.presence_for(app.state),
            ),
            queue_name=PushConsumer.queue_for(settings.stack),
            wait_seconds=settings.push_wait_seconds,
            probe=lambda: ping(app.state.pool),
        )

    @property
    def error(self) -> BaseException | None:
        return self._consumer.error

    async def start(self) -> None:
        await self._client.start()
        await self._consumer.start()

    async def stop(self) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._client.close()


class DigestComponent:
    """The digest scheduler with its sender (SMTP or SES) and thumbnail presigner."""

    name = "digest-scheduler"

    def __init__(self, app: Starlette) -> None:
        settings: Settings = app.state.settings
        self._sender: EmailSender = sender_for(settings)
        self.service = DigestService(
            app.state.pool,
            app.state.redis,
            self._sender,
            S3Presigner(app.state.s3, settings.bucket),
            settings,
            inbox=inbox_api.inbox_for(app.state),
        )
        self.scheduler = DigestScheduler(
            self.service,
            app.state.redis,
            interval=settings.digest_interval_seconds,
            housekeeping=Housekeeping(app.state.pool, settings),
        )

    async def start(self) -> None:
        await self.scheduler.start()

    async def stop(self) -> None:
        try:
            await self.scheduler.stop()
        finally:
            await self._sender.close()


class EmailEventsComponent:
    """The SQS ``email-events`` consumer: SES bounces and complaints → suppressions."""

    name = "email-events"

    def __init__(self, app: Starlette) -> None:
        settings: Settings = app.state.settings
        self.consumer = EmailEventsConsumer(
            app.state.sqs,
            FeedbackHandler(app.state.pool),
            queue_name=EmailEventsConsumer.queue_for(settings.stack),
            wait_seconds=settings.push_wait_seconds,
            probe=lambda: ping(app.state.pool),
        )

    @property
    def error(self) -> BaseException | None:
        return self.consumer.error

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()


def components(app: Starlette) -> list[Any]:
    settings: Settings = app.state.settings
    found: list[Any] = []
    if settings.email_events_consumer_enabled and not settings.smtp_url:
        found.append(EmailEventsComponent(app))
    if settings.push_consumer_enabled:
        if settings.fcm_credentials:
            found.append(PushComponent(app))
        else:
            log.warning("push notifications off: BUILDPEER_FCM_CREDENTIALS is not set")
    if settings.digest_scheduler_enabled:
        if settings.unsubscribe_secret or settings.jwt_secret:
            found.append(DigestComponent(app))
        else:
            log.warning("digests off: set BUILDPEER_UNSUBSCRIBE_SECRET to sign unsubscribe links")
    return found
