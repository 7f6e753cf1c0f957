"""schemathesis's own CLI, every check (``--checks all``) over every phase (examples,
coverage, fuzzing, stateful) against a real server: no failure at all. The examples are
kept few so the run stays bounded; the stateful phase follows the document's links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TenantFixture

MAX_EXAMPLES = 5


@pytest.mark.timeout(900)
def test_schemathesis_all_checks_all_phases(live_server: Any, tenant: TenantFixture, tmp_path: Path) -> None:
    server = live_server()
    cli = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--no-color",
            "-H",
            f"Authorization: Bearer {tenant.tokens['admin']}",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    print(result.stdout[-20000:])
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
