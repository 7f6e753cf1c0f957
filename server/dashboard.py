"""The live dashboard page (``/`` and ``/dashboard``) and its static bundle (``/static/dist/``).

The bundle is built from ``web/`` by ``make run`` / ``make test`` (``node web/build.mjs``)
into ``server/static/dist/`` and is not committed. ``index.html`` is written last by the
build, so its presence means the bundle is complete; without it the page answers 503 with
the command that builds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from core.settings import Settings
from server import openapi
from server.errors import error_response

DIST_DIR = Path(__file__).resolve().parent / "static" / "dist"
INDEX = "index.html"
IMMUTABLE = "public, max-age=31536000, immutable"


def s3_origin(settings: Settings) -> str:
    """Where the browser PUTs file bytes and loads thumbnails from (presigned URLs)."""
    if settings.aws_endpoint_url:
        parts = urlsplit(settings.aws_endpoint_url)
        return f"{parts.scheme}://{parts.netloc}"
    return "https://*.amazonaws.com"


def content_security_policy(settings: Settings, request: Request) -> str:
    host = request.headers.get("host", "")
    ws = "wss" if request.url.scheme == "https" else "ws"
    s3 = s3_origin(settings)
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",  # Uppy sets inline style attributes
            f"img-src 'self' data: blob: {s3}",
            f"connect-src 'self' {ws}://{host} {s3}",
            "font-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def page_headers(settings: Settings, request: Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings, request),
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def not_built(dist_dir: Path) -> Response:
    return error_response(
        503,
        "dashboard_not_built",
        f"the dashboard bundle is missing ({dist_dir / INDEX}); run `make run` "
        "(or `make web-build`) to build it from web/",
    )


async def dashboard_page(request: Request) -> Response:
    dist = bundle_dir(request.app)
    try:
        html = (dist / INDEX).read_bytes()
    except FileNotFoundError:
        return not_built(dist)
    return Response(html, media_type="text/html", headers=page_headers(request.app.state.settings, request))


def bundle_dir(app: Starlette) -> Path:
    """``app.state.dashboard_dist`` when set (tests), else ``server/static/dist``."""
    found: Path = getattr(app.state, "dashboard_dist", DIST_DIR)
    return found


class BundleFiles(StaticFiles):
    """The built assets of one directory. File names carry a content hash, so they are
    cached for good."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = Path(full_path).name
        response.headers["Cache-Control"] = "no-cache" if name == INDEX else IMMUTABLE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class BundleMount:
    """Serves :func:`bundle_dir` of the app it is mounted in; a missing bundle is a JSON
    404 rather than Starlette's error for a missing directory."""

    def __init__(self) -> None:
        self._files: dict[Path, BundleFiles] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = bundle_dir(scope["app"])
        if not root.is_dir():
            response = error_response(404, "not_found", "the dashboard bundle is not built; run `make run`")
            await response(scope, receive, send)
            return
        files = self._files.get(root)
        if files is None:
            files = self._files[root] = BundleFiles(root)
        await files(scope, receive, send)


openapi.describe(
    dashboard_page,
    "get",
    {
        "summary": "The live uploads dashboard (HTML; Spanish by default)",
        "operationId": "dashboard",
        "parameters": [
            openapi.query_param(
                "project", description="Project to show (the page checks it is a UUID; any text is served)"
            ),
            openapi.query_param("token", description="Bearer JWT (removed from the address bar on load)"),
            openapi.query_param(
                "lang",
                description="es, pt-BR or en; anything else: the browser's language (any text is served)",
            ),
        ],
        "responses": {
            "200": {"description": "The page", "content": {"text/html": {}}},
            **openapi.errors(503),
        },
    },
)


def routes() -> list[BaseRoute]:
    return [
        Route("/", dashboard_page, methods=["GET"]),
        Route("/dashboard", dashboard_page, methods=["GET"]),
        Mount("/static/dist", app=BundleMount(), name="dashboard-static"),
    ]
