"""Fixtures for the infrastructure tests: moto servers over HTTP and the templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cfnlint.decode import decode

from server.devstack.aws import MotoServer
from server.devstack.process import free_port

TEMPLATES = Path(__file__).resolve().parents[2] / "infra" / "templates"


def load(name: str) -> dict[str, Any]:
    """A template as CloudFormation reads it (short-form tags like ``!Ref`` understood)."""
    template, matches = decode(str(TEMPLATES / name))
    assert not matches, [str(m) for m in matches]
    assert template is not None
    return dict(template)


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """A moto server over HTTP on a free port, emptied after the test. (moto servers in one
    process share their backends, so a comparison snapshots, resets, and deploys again.)"""
    server = MotoServer(free_port())
    server.start()
    try:
        yield server
    finally:
        reset(server)
        server.stop()


def reset(server: MotoServer) -> None:
    httpx.post(f"{server.url}/moto-api/reset").raise_for_status()
