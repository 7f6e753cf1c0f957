"""``GET /api/v1/uploads/{upload_id}/derivatives/{kind}``: a short-lived presigned GET of a
ready upload's derivative (``thumb-200``, ``thumb-800``, ``preview``, ``text``).

302 to the presigned URL by default; with ``Accept: application/json`` a JSON body
``{"url", "expires_in", "kind", "mime_type", "width", "height"}`` instead, for pages that
set the URL on an ``<img>`` (an ``<img>`` cannot send the bearer token itself).

Nothing is exposed before the scan says clean: only an upload whose status is ``ready``
has derivatives here (404 otherwise). Another tenant's upload is invisible (RLS: 404);
a project the caller is not a member of is 403, as for the upload's status.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core.db import tenant_transaction
from core.keys import is_under_tenant
from core.settings import Settings
from core.status import UploadStatus
from server import openapi
from server.errors import not_found
from server.permissions import authenticate, parse_uuid, require_project_access
from server.uploads.presign import presign_client

KINDS = ("thumb-200", "thumb-800", "preview", "text")
MAX_EXPIRY_SECONDS = 300


class DerivativeSigner:
    """Presigns GETs with the same client configuration as the upload presigner
    (SigV4; path-style on a custom endpoint)."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.bucket = settings.bucket
        self.expires = min(MAX_EXPIRY_SECONDS, settings.presign_expiry_seconds)
        self.client = client if client is not None else presign_client(settings)

    def get_object(self, key: str) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expires, HttpMethod="GET"
        )
        return url


def signer(request: Request) -> DerivativeSigner:
    state = request.app.state
    found: DerivativeSigner | None = getattr(state, "derivative_signer", None)
    if found is None:
        found = state.derivative_signer = DerivativeSigner(state.settings)
    return found


async def load_derivative(conn: asyncpg.Connection, upload_id: Any, kind: str) -> asyncpg.Record | None:
    """The upload's project and status with the derivative's row, if any (one statement)."""
    return await conn.fetchrow(
        """SELECT u.project_id, u.status, d.s3_key, d.mime_type, d.width, d.height
             FROM uploads u
             LEFT JOIN derivatives d ON d.upload_id = u.upload_id AND d.kind = $2
            WHERE u.upload_id = $1""",
        upload_id,
        kind,
    )


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def derivative(request: Request) -> Response:
    principal = await authenticate(request)
    upload_id = parse_uuid(request.path_params["upload_id"], "upload")
    kind = request.path_params["kind"]
    if kind not in KINDS:
        raise not_found(f"derivative kind {kind!r} (one of {', '.join(KINDS)})")
    async with tenant_transaction(request.app.state.pool, principal.tenant_id, readonly=True) as conn:
        row = await load_derivative(conn, upload_id, kind)
        if row is None:
            raise not_found("upload")
        await require_project_access(conn, principal, row["project_id"])
    if row["status"] != UploadStatus.READY or row["s3_key"] is None:
        raise not_found("derivative")
    key: str = row["s3_key"]
    if not is_under_tenant(key, principal.tenant_id):  # defence in depth: RLS already holds
        raise not_found("derivative")
    sign = signer(request)
    url = sign.get_object(key)
    cache = {"Cache-Control": "private, no-store"}
    if wants_json(request):
        body = {
            "url": url,
            "expires_in": sign.expires,
            "kind": kind,
            "mime_type": row["mime_type"],
            "width": row["width"],
            "height": row["height"],
        }
        return JSONResponse(body, headers=cache)
    return RedirectResponse(url, status_code=302, headers=cache)


openapi.describe(
    derivative,
    "get",
    {
        "summary": "Presigned GET of a ready upload's derivative",
        "operationId": "getDerivative",
        "security": openapi.BEARER,
        "parameters": [
            openapi.path_param("upload_id"),
            openapi.path_param("kind", {"type": "string", "enum": list(KINDS)}),
        ],
        "responses": {
            "200": openapi.json_response("DerivativeLink", "With Accept: application/json"),
            "302": {"description": "Redirect to the presigned URL", "headers": {"Location": {"schema": {}}}},
            **openapi.errors(401, 403, 404),
        },
    },
    schemas={
        "DerivativeLink": {
            "type": "object",
            "required": ["url", "expires_in", "kind", "mime_type"],
            "properties": {
                "url": {"type": "string", "format": "uri"},
                "expires_in": {"type": "integer"},
                "kind": {"type": "string", "enum": list(KINDS)},
                "mime_type": {"type": "string"},
                "width": {"type": "integer", "nullable": True},
                "height": {"type": "integer", "nullable": True},
            },
        }
    },
)


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/uploads/{upload_id}/derivatives/{kind}", derivative, methods=["GET"])]
