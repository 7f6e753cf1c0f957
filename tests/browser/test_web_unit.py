"""The dashboard's pure JavaScript (web/src: status machine, list merging, texts, session)
under Node's test runner, and its contract with core.status."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from core.status import ReasonCode, UploadStatus, can_transition

WEB = Path(__file__).resolve().parents[2] / "web"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed (Node 20+ is needed to build and test the dashboard)")
    return found


def test_node_unit_tests() -> None:
    result = subprocess.run(
        [node(), "--test", "--test-reporter=dot", "test/"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_status_machine_matches_core() -> None:
    script = (
        "import('./src/status.js').then((m) => console.log(JSON.stringify({statuses: m.STATUSES, "
        "reasons: m.REASONS, moves: m.STATUSES.flatMap((a) => m.STATUSES.filter((b) => "
        "m.canTransition(a, b)).map((b) => a + '>' + b))})))"
    )
    result = subprocess.run(
        [node(), "--input-type=module", "-e", script], cwd=WEB, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)

    assert js["statuses"] == [s.value for s in UploadStatus]
    assert sorted(js["reasons"]) == sorted(r.value for r in ReasonCode)
    expected = [f"{a}>{b}" for a in UploadStatus for b in UploadStatus if can_transition(a, b)]
    assert js["moves"] == expected
