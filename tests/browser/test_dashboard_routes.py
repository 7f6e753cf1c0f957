"""The dashboard page and its bundle as HTTP resources (the browser test drives the page)."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette

from core.settings import Settings
from server import dashboard
from server.app import create_app


def fake_bundle(dist: Path) -> None:
    dist.mkdir(parents=True)
    (dist / "app-ABC123.js").write_text("console.log('hola')\n")
    script = '<script type="module" src="/static/dist/app-ABC123.js"></script>'
    (dist / "index.html").write_text(f'<!doctype html><html lang="es">{script}</html>')


async def serve(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_page_and_bundle(settings: Settings, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    fake_bundle(dist)
    app = create_app(settings, run_components=False)
    app.state.dashboard_dist = dist
    async with await serve(app) as client:
        for path in ("/", "/dashboard", "/?project=x&token=y"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert 'lang="es"' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert settings.aws_endpoint_url  # the browser PUTs to S3 and loads thumbnails from it
        assert settings.aws_endpoint_url.rstrip("/") in csp
        assert "ws://testserver" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-cache"
        asset = await client.get("/static/dist/app-ABC123.js")
        assert asset.status_code == 200 and asset.text == "console.log('hola')\n"
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (await client.get("/static/dist/nope.js")).status_code == 404
        assert (await client.get("/static/dist/../../app.py")).status_code == 404


async def test_missing_bundle_says_how_to_build_it(settings: Settings, tmp_path: Path) -> None:
    app = create_app(settings, run_components=False)
    app.state.dashboard_dist = tmp_path / "nothing-here"
    async with await serve(app) as client:
        page = await client.get("/")
        assert page.status_code == 503
        error = page.json()["error"]
        assert error["code"] == "dashboard_not_built"
        assert "make run" in error["message"]
        asset = await client.get("/static/dist/app.js")
        assert asset.status_code == 404 and "make run" in asset.json()["error"]["message"]


def test_s3_origin() -> None:
    assert dashboard.s3_origin(Settings(aws_endpoint_url="http://127.0.0.1:5000/")) == "http://127.0.0.1:5000"
    assert dashboard.s3_origin(Settings(aws_endpoint_url=None)) == "https://*.amazonaws.com"
