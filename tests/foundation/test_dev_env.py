"""Which commands read ``var/dev.env`` (cli/main.py DEV_ENV_COMMANDS): the ones run beside
`buildpeer dev`; a production `serve` or `migrate` never does."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import jwt

from cli.main import DEV_ENV_COMMANDS
from tests.conftest import JWT_SECRET


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDPEER_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dev_env(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev.env").write_text(
        "# written by `buildpeer dev`\n"
        "BUILDPEER_DATABASE_URL=postgresql://buildpeer_app@127.0.0.1:1/buildpeer\n"
        "BUILDPEER_REDIS_URL=redis://127.0.0.1:1/0\n"
        f"BUILDPEER_JWT_SECRET={JWT_SECRET}\n"
    )


def test_serve_and_migrate_never_read_dev_env(tmp_path: Path) -> None:
    _dev_env(tmp_path)
    serve = _run(tmp_path, "serve")
    assert serve.returncode == 2
    assert "BUILDPEER_DATABASE_URL and BUILDPEER_REDIS_URL must be set" in serve.stderr
    migrate = _run(tmp_path, "migrate")
    assert migrate.returncode == 2 and "is not set" in migrate.stderr
    assert {"serve", "migrate", "dev"}.isdisjoint(DEV_ENV_COMMANDS)


def test_commands_beside_the_dev_stack_read_it(tmp_path: Path) -> None:
    _dev_env(tmp_path)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    result = _run(tmp_path, "token", "--tenant", str(tenant), "--user", str(user), "--role", "admin")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(
        result.stdout.strip().split()[-1], JWT_SECRET, algorithms=["HS256"], audience="buildpeer"
    )
    assert claims["tid"] == str(tenant) and claims["role"] == "admin"
