"""The FCM HTTP v1 client.

pyfcm builds the message (``parse_payload``), reads the service-account file and gets
the OAuth token (google-auth, against the file's ``token_uri``); its endpoint base is
``FCM_END_POINT_BASE``, which we point at ``settings.fcm_endpoint`` when set. The send
itself is ours, over ``httpx``: pyfcm's ``send_request`` blocks its thread in
``time.sleep`` for any ``Retry-After`` and recurses without a bound, retries 502/503
inside urllib3 without reading ``Retry-After``, and ``parse_response`` folds 429 and 5xx
into one exception and drops FCM's ``errorCode`` — which we need to tell an
UNREGISTERED/invalid token (delete the device) from a bad request or an outage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from pyfcm import FCMNotification

from subscribers.push.messages import PushMessage

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
TOKEN_ERRORS = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


class Outcome(StrEnum):
    SENT = "sent"
    BAD_TOKEN = "bad_token"  # UNREGISTERED / invalid / other project: delete the device
    FAILED = "failed"  # permanent for this message (bad request); not retried
    RETRY_LATER = "retry_later"  # 429/5xx/network after our attempts: the event is redelivered
    SUPPRESSED = "suppressed"  # not sent: the user read it in the app while the push waited


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    attempts: int
    name: str | None = None
    error: str | None = None


class FcmConfigError(RuntimeError):
    pass


def endpoint_base(endpoint: str) -> str:
    """``http://host:port`` (or ``.../v1/projects``) → pyfcm's ``FCM_END_POINT_BASE``."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/projects") else base + "/v1/projects"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_error(status: int, body: Any) -> tuple[str, bool]:
    """(error code, token is bad) from an FCM v1 error response."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("status") or status)
    token_bad = status == 404
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        fcm_code = detail.get("errorCode")
        if fcm_code:
            code = str(fcm_code)
            token_bad = token_bad or fcm_code in TOKEN_ERRORS
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_bad = True
    message = str(error.get("message", "")).lower()
    if status == 400 and "registration token" in message:
        token_bad = True
    return code, token_bad


Sleep = Callable[[float], Awaitable[None]]


class FcmClient:
    def __init__(
        self,
        credentials_path: str,
        *,
        endpoint: str | None = None,
        max_attempts: int = 5,
        max_retry_after: float = 30.0,
        timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        path = Path(credentials_path)
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FcmConfigError(f"BUILDPEER_FCM_CREDENTIALS: cannot read {path}: {exc}") from exc
        project_id = info.get("project_id") if isinstance(info, dict) else None
        if not project_id:
            raise FcmConfigError(f"BUILDPEER_FCM_CREDENTIALS: {path} has no project_id")
        self._fcm = FCMNotification(service_account_file=str(path), project_id=project_id)
        if endpoint:
            self._fcm.FCM_END_POINT_BASE = endpoint_base(endpoint)  # instance override
        self.project_id = str(project_id)
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._timeout = timeout
        self._sleep = sleep
        self._http: httpx.AsyncClient | None = None
        self._url: str | None = None
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_lock = asyncio.Lock()

    async def start(self) -> None:
        # Reads the service-account file (pyfcm) — blocking, so off the loop.
        self._url = await asyncio.to_thread(lambda: self._fcm.fcm_end_point)
        self._http = httpx.AsyncClient(timeout=self._timeout, limits=httpx.Limits(max_connections=100))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FcmClient.start() was not called")
        return self._url

    async def access_token(self, *, refresh: bool = False) -> str:
        async with self._token_lock:
            if refresh or self._token is None or time.time() > self._token_expiry - 60:
                token = await asyncio.to_thread(self._fcm._get_access_token)
                expiry = getattr(self._fcm.credentials, "expiry", None)
                self._token = str(token)
                self._token_expiry = (
                    expiry.replace(tzinfo=UTC).timestamp()
                    if isinstance(expiry, datetime)
                    else time.time() + 1800
                )
            return self._token

    def encode(self, message: PushMessage) -> bytes:
        payload: bytes = self._fcm.parse_payload(**message.payload_kwargs())
        return payload

    def _backoff(self, attempt: int) -> float:
        return min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    async def send(self, message: PushMessage) -> SendResult:
        if self._http is None:
            raise RuntimeError("FcmClient.start() was not called")
        payload = self.encode(message)
        refreshed = False
        error = "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            token = await self.access_token()
            try:
                response = await self._http.post(
                    self.url,
                    content=payload,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                error = f"transport: {type(exc).__name__}: {exc}"
                if attempt < self._max_attempts:
                    await self._sleep(self._backoff(attempt))
                continue
            if response.status_code == 200:
                try:
                    name = response.json().get("name")
                except ValueError:
                    name = None
                return SendResult(Outcome.SENT, attempt, name=name)
            try:
                body = response.json()
            except ValueError:
                body = None
            code, token_bad = classify_error(response.status_code, body)
            error = f"{response.status_code} {code}"
            if token_bad:
                return SendResult(Outcome.BAD_TOKEN, attempt, error=error)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                await self.access_token(refresh=True)
                continue
            if response.status_code not in RETRYABLE_STATUS:
                return SendResult(Outcome.FAILED, attempt, error=error)
            if attempt == self._max_attempts:
                break
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > self._max_retry_after:
                # Too long to hold the message: let SQS redeliver it later.
                return SendResult(Outcome.RETRY_LATER, attempt, error=f"{error}; Retry-After {wait:.0f}s")
            await self._sleep(wait if wait is not None else self._backoff(attempt))
        return SendResult(Outcome.RETRY_LATER, self._max_attempts, error=error)
