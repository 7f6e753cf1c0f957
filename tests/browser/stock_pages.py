"""The stock-Uppy test pages (tests/browser/uppy5/, tests/browser/uppy6/): each folder pins one
Uppy release in its own node_modules and is bundled by ``build_stock_page.mjs``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def build_stock_page(folder: str, versions: dict[str, str]) -> Path:
    """Bundle ``tests/browser/<folder>`` and return its ``dist`` directory, after checking that
    its node_modules hold exactly ``versions`` (``{"aws-s3": "6.3.1", ...}`` of ``@uppy/*``)."""
    node = shutil.which("node")
    assert node, "node is not installed"
    page = HERE / folder
    if not (page / "node_modules" / "@uppy" / "aws-s3").is_dir():
        pytest.fail(f"tests/browser/{folder}/node_modules is missing: run `npm ci` in it (make setup)")
    result = subprocess.run(
        [node, "build_stock_page.mjs", folder], cwd=HERE, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    installed = {
        name: json.loads((page / "node_modules" / "@uppy" / name / "package.json").read_text())["version"]
        for name in versions
    }
    assert installed == versions
    return page / "dist"
