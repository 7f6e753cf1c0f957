"""The identity provider's signing keys (``BUILDPEER_JWT_JWKS_URL``), cached.

- Only over https; plain http only to a loopback host (dev and the tests' local JWKS), so
  nobody on the path can hand the server their own keys.
- Keys are used for ``BUILDPEER_JWT_JWKS_CACHE_SECONDS`` and then fetched again (a rotated
  or revoked key stops being accepted).
- A token naming an unknown ``kid`` fetches again (the provider rotated), at most once per
  ``BUILDPEER_JWT_JWKS_MIN_REFRESH_SECONDS``: a flood of made-up ``kid``s costs one fetch.
- Fetching blocks: :meth:`JwksKeys.key` is called from a worker thread, never on the event
  loop (:meth:`server.auth.TokenVerifier.verify_async`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from core.settings import is_loopback_host

log = logging.getLogger(__name__)
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024


class JwksError(Exception):
    """No usable key: ``reason`` is ``unknown_kid`` or ``unavailable``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_jwks_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return url
    raise ValueError(f"JWKS URL must be https:// (http:// only for a loopback host): {url}")


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        min_refresh_seconds: float,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self.fetches = 0

    def key(self, kid: str | None) -> Any:
        """The public key for ``kid`` (blocking when a fetch is due)."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._ttl:
                self._refresh(now, force=self._fetched_at is None)
            elif kid is not None and kid not in self._keys:
                self._refresh(now, force=False)
            if not self._keys:
                raise JwksError("unavailable", "the identity provider's signing keys are unavailable")
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise JwksError("unknown_kid", "token has no kid")
            try:
                return self._keys[kid]
            except KeyError:
                raise JwksError("unknown_kid", "unknown signing key") from None

    def _refresh(self, now: float, *, force: bool) -> None:
        if not force and self._tried_at is not None and now - self._tried_at < self._min_refresh:
            return  # rate-limited: keep what we have
        self._tried_at = now
        try:
            keys = self._fetch()
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            # Keep serving the keys we had: an outage of the provider must not log everyone out.
            log.warning("JWKS fetch failed", extra={"url": self.url, "error": type(exc).__name__})
            return
        self._keys = keys
        self._fetched_at = now

    def _fetch(self) -> dict[str, Any]:
        self.fetches += 1
        response = httpx.get(self.url, timeout=self._timeout, follow_redirects=False)
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document")
        keys: dict[str, Any] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg", "RS256") != "RS256":
                continue
            kid = entry.get("kid")
            keys[str(kid) if kid is not None else ""] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
        if "" in keys and len(keys) > 1:
            del keys[""]  # a key without kid is only usable when it is the only one
        return keys
