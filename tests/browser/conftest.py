"""Browser-test fixtures: a freshly built dashboard bundle, a real clamd, and an isolated
stack (own bucket, queues and topics in the session's moto) with the server's components
(hub + events consumer) and the pipeline worker running, so an upload really reaches
``ready``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.settings import Settings
from devstack.aws import provision
from devstack.clamd import EmbeddedClamd
from processors.worker import Worker
from server.dashboard import DIST_DIR, INDEX
from tests.conftest import Stack, running_worker

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def _newest_source_mtime() -> float:
    sources = [WEB / "build.mjs", WEB / "package-lock.json", *(WEB / "src").rglob("*")]
    return max(p.stat().st_mtime for p in sources if p.is_file())


@pytest.fixture(scope="session")
def dashboard_bundle() -> Path:
    """``server/static/dist`` built from the current ``web/src`` (rebuilt when older)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: Node 20+ builds the dashboard (make setup)")
    if not (WEB / "node_modules" / "esbuild").is_dir():
        pytest.fail("web/node_modules is missing: run `make setup` (npm ci in web/)")
    index = DIST_DIR / INDEX
    if not index.is_file() or index.stat().st_mtime < _newest_source_mtime():
        result = subprocess.run([node, "build.mjs"], cwd=WEB, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"dashboard build failed:\n{result.stdout}\n{result.stderr}"
    return DIST_DIR


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (scripts/system-packages.sh installs it)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        pytest.fail("web/node_modules/playwright-core is missing: run `make setup`")
    return CHROMIUM


@pytest.fixture(scope="session")
def dash_settings(stack: Stack) -> Settings:
    """Stack ``bpdash`` (own bucket, queues, topics) in the session's moto: the servers
    these tests start run the hub and an events consumer without touching other tests'
    queues."""
    settings = stack.settings.replace(stack="bpdash", bucket="bpdash-uploads", events_wait_seconds=1)
    provision(settings)
    return settings


@dataclass
class Pipeline:
    settings: Settings
    worker: Worker


@pytest.fixture
async def running_pipeline(dash_settings: Settings, clamd: EmbeddedClamd) -> AsyncIterator[Pipeline]:
    """The ``bpdash`` stack with the worker polling its processor queues."""
    settings = dash_settings.replace(clamd_url=clamd.url)
    async with running_worker(settings, drain_seconds=10) as worker:
        yield Pipeline(settings, worker)


def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
