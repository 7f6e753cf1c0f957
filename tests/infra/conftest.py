"""Fixtures for the infrastructure tests: moto servers over HTTP and the templates."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cfnlint.decode import decode

from devstack.process import ManagedProcess, free_port, port_open, wait_until

TEMPLATES = Path(__file__).resolve().parents[2] / "infra" / "templates"


def load(name: str) -> dict[str, Any]:
    """A template as CloudFormation reads it (short-form tags like ``!Ref`` understood)."""
    template, matches = decode(str(TEMPLATES / name))
    assert not matches, [str(m) for m in matches]
    assert template is not None
    return dict(template)


class MotoProcess:
    """A moto server in its own process. moto keeps its state per process, so resetting
    this one can never empty the session's moto that every other test relies on."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            log_path=base / "moto.log",
        )

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, 30, "moto")

    def _ready(self) -> bool:
        self.process.check_alive()  # raises with the log's tail if moto died
        return port_open(self.port)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoProcess]:
    """A moto server over HTTP on a free port, in its own process; a comparison snapshots,
    resets it, and deploys again."""
    server = MotoProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def reset(server: MotoProcess) -> None:
    httpx.post(f"{server.url}/moto-api/reset").raise_for_status()
