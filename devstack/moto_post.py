"""moto's answer to an S3 POST Object (a browser form upload) lacks what S3 sends: the
``ETag`` and ``Location`` headers, and the bucket's CORS ``Access-Control-Expose-Headers``
(moto applies the CORS rules to object requests only). Stock ``@uppy/aws-s3`` reads both
headers from script (without ``ETag`` its upload never settles), so the local stack wraps
moto's WSGI app with this middleware, which adds them to a successful form POST from the
object moto just stored and the bucket's CORS rule. Nothing else changes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from werkzeug.formparser import parse_form_data

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MAX_FORM_BYTES = 5 * 1024**3  # S3's single-upload limit


def _bucket_of(environ: dict[str, Any]) -> str | None:
    """The bucket of a path-style ``POST /<bucket>`` (no sub-resource query), else None."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
        return None
    if not str(environ.get("CONTENT_TYPE", "")).startswith("multipart/form-data"):
        return None
    path = str(environ.get("PATH_INFO", "")).strip("/")
    return path if path and "/" not in path else None


def _backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def _stored_etag(bucket: str, key: str) -> str | None:
    stored = _backend().get_object(bucket, key)
    return None if stored is None else str(stored.etag)


def _exposed_headers(bucket: str, origin: str | None) -> str | None:
    """The ``ExposeHeaders`` of the bucket's first CORS rule that allows ``origin``."""
    if not origin:
        return None
    from moto.s3.utils import cors_matches_origin

    for rule in _backend().get_bucket(bucket).cors:
        if rule.allowed_origins is not None and cors_matches_origin(origin, rule.allowed_origins):
            exposed = rule.exposed_headers
            if not exposed:
                return None
            return ", ".join(exposed) if isinstance(exposed, list) else str(exposed)
    return None


class PostObjectHeaders:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bucket = _bucket_of(environ)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if bucket is None or not 0 < length <= MAX_FORM_BYTES:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        probe = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        _, form, _ = parse_form_data(probe)
        key = form.get("key")
        environ["wsgi.input"] = io.BytesIO(body)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if key and status.startswith("2"):
                etag = _stored_etag(bucket, key)
                names = {name.lower() for name, _ in headers}
                if etag and "etag" not in names:
                    headers.append(("ETag", etag))
                if "location" not in names:
                    host = environ.get("HTTP_HOST", "localhost")
                    headers.append(("Location", f"http://{host}/{bucket}/{quote(key)}"))
                exposed = _exposed_headers(bucket, environ.get("HTTP_ORIGIN"))
                if exposed and "access-control-expose-headers" not in names:
                    headers.append(("Access-Control-Expose-Headers", exposed))
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
