"""A local emulator of the FCM HTTP v1 API (dev stack and tests).

It issues its own service-account file whose ``token_uri`` points at itself, so pyfcm
and google-auth run their real OAuth flow (a JWT assertion signed with the account's
RSA key, checked here) and then ``POST /v1/projects/{p}/messages:send`` with the bearer
token. Each message is checked for the v1 shape and, when accepted, recorded in memory
and as a JSON file under the directory (``./var/push/`` in dev).

Tests script faults: :meth:`FcmEmulator.fail_next` (429 with ``Retry-After``, 503, ...),
:meth:`unregister` (404 UNREGISTERED) and :meth:`invalidate` (400 INVALID_ARGUMENT on
``message.token``).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.process import free_port, wait_until

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_MESSAGE_KEYS = {
    "token",
    "topic",
    "condition",
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "name",
}
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    token: str | None = None  # only for this device token; None = any


@dataclass
class SendRecord:
    """One messages:send request as the emulator saw and answered it."""

    at: float
    status: int
    token: str | None
    message: dict[str, Any] | None
    authorization: str | None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    access_tokens: dict[str, float] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    unregistered: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    requests: list[SendRecord] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0


def _error(
    status: int,
    grpc_status: str,
    message: str,
    *,
    fcm_code: str | None = None,
    violations: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        )
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
    body = {"error": {"code": status, "message": message, "status": grpc_status, "details": details}}
    return JSONResponse(body, status, headers=headers)


def check_message(message: Any) -> str | None:
    """Why ``message`` is not a valid FCM v1 Message for one device, or None."""
    if not isinstance(message, dict):
        return "message: expected an object"
    unknown = set(message) - _MESSAGE_KEYS
    if unknown:
        return f"message: unknown field {sorted(unknown)[0]!r}"
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return "message: exactly one of token, topic, condition"
    if "token" in message and (not isinstance(message["token"], str) or not message["token"]):
        return "message.token: expected a non-empty string"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return "message.data: values must be strings"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not all(isinstance(v, str) for v in notification.values()):
        return "message.notification: title/body must be strings"
    android = message.get("android")
    if android is not None:
        if not isinstance(android, dict):
            return "message.android: expected an object"
        if str(android.get("priority", "normal")).lower() not in ("normal", "high"):
            return "message.android.priority: expected normal or high"
        if "ttl" in android and not (isinstance(android["ttl"], str) and _TTL.match(android["ttl"])):
            return "message.android.ttl: expected a duration such as '3600s'"
        if "collapse_key" in android and not isinstance(android["collapse_key"], str):
            return "message.android.collapse_key: expected a string"
    for platform in ("apns", "webpush"):
        config = message.get(platform)
        if config is None:
            continue
        if not isinstance(config, dict):
            return f"message.{platform}: expected an object"
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return f"message.{platform}.headers: values must be strings"
    return None


class FcmEmulator:
    def __init__(
        self,
        directory: Path | None = None,
        *,
        port: int | None = None,
        project_id: str = "buildpeer-dev",
        record_files: bool = True,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fcm-")
            directory = Path(self._tmp.name)
        self.directory = Path(directory)
        self.port = port or free_port()
        self.project_id = project_id
        self.record_files = record_files
        self.state = _State()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def credentials_path(self) -> Path:
        return self.directory / "service-account.json"

    def write_credentials(self) -> Path:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "emulator",
            "private_key": pem,
            "client_email": self._client_email,
            "client_id": "0",
            "token_uri": self.token_uri,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        self.credentials_path.write_text(json.dumps(info, indent=2))
        return self.credentials_path

    def start(self) -> FcmEmulator:
        self.write_credentials()
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fcm-emulator", daemon=True)
        self._thread.start()
        server, thread = self._server, self._thread
        wait_until(lambda: server.started or not thread.is_alive(), 20, "FCM emulator")
        if not server.started:
            raise RuntimeError("FCM emulator failed to start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- test controls ---------------------------------------------------------------
    def fail_next(
        self, status: int, *, times: int = 1, retry_after: str | int | None = None, token: str | None = None
    ) -> None:
        with self.state.lock:
            for _ in range(times):
                self.state.faults.append(
                    Fault(status, None if retry_after is None else str(retry_after), token)
                )

    def unregister(self, token: str) -> None:
        with self.state.lock:
            self.state.unregistered.add(token)

    def invalidate(self, token: str) -> None:
        with self.state.lock:
            self.state.invalid.add(token)

    def revoke_access_tokens(self) -> None:
        with self.state.lock:
            self.state.access_tokens.clear()

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def requests(self) -> list[SendRecord]:
        with self.state.lock:
            return list(self.state.requests)

    def messages_to(self, token: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("token") == token]

    def reset(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.requests.clear()
            self.state.messages.clear()

    # --- HTTP ------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
            ]
        )

    async def _token(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self._key.public_key(),
                algorithms=["RS256"],
                # google-auth always signs for Google's endpoint, whatever token_uri says
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                issuer=self._client_email,
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, 400)
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return JSONResponse({"error": "invalid_scope"}, 400)
        access = "ya29.emulator-" + secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.access_tokens[access] = time.time() + 3600
            self.state.token_requests += 1
        return JSONResponse({"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

    async def _send(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        token = message.get("token") if isinstance(message, dict) else None
        response = self._answer(request, auth, body, message, token)
        with self.state.lock:
            self.state.requests.append(SendRecord(time.time(), response.status_code, token, message, auth))
        return response

    def _answer(
        self, request: Request, auth: str | None, body: Any, message: Any, token: Any
    ) -> JSONResponse:
        scheme, _, bearer = (auth or "").partition(" ")
        with self.state.lock:
            expiry = self.state.access_tokens.get(bearer)
        if scheme.lower() != "bearer" or expiry is None or expiry < time.time():
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.path_params["project"] != self.project_id:
            return _error(403, "PERMISSION_DENIED", "SenderId mismatch", fcm_code="SENDER_ID_MISMATCH")
        with self.state.lock:
            fault_index = next(
                (i for i, f in enumerate(self.state.faults) if f.token is None or f.token == token), None
            )
            fault = self.state.faults.pop(fault_index) if fault_index is not None else None
            unregistered = token in self.state.unregistered
            invalid = token in self.state.invalid
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            status_name = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 500: "INTERNAL"}.get(
                fault.status, "UNKNOWN"
            )
            code = {429: "QUOTA_EXCEEDED", 503: "UNAVAILABLE", 500: "INTERNAL"}.get(fault.status)
            return _error(fault.status, status_name, "scripted fault", fcm_code=code, headers=headers)
        if not isinstance(body, dict) or set(body) - {"message", "validate_only"}:
            return _error(400, "INVALID_ARGUMENT", "body: expected {message, validate_only}")
        problem = check_message(message)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem, fcm_code="INVALID_ARGUMENT")
        if unregistered:
            return _error(404, "NOT_FOUND", "Requested entity was not found.", fcm_code="UNREGISTERED")
        if invalid:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                fcm_code="INVALID_ARGUMENT",
                violations=[{"field": "message.token", "description": "Invalid registration token"}],
            )
        name = f"projects/{self.project_id}/messages/{uuid.uuid4().hex}"
        if not body.get("validate_only"):
            entry = {**message, "name": name}
            with self.state.lock:
                self.state.messages.append(entry)
            if self.record_files:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{name.rsplit('/', 1)[-1]}.json"
                path.write_text(json.dumps(entry, indent=2, ensure_ascii=False))
        return JSONResponse({"name": name})
