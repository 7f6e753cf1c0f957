"""Server processes for the benchmarks: ``buildpeer serve`` (or another command) in its own
process on a loopback port, its log under the run's folder, stopped by the caller."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Any) -> dict[str, str]:
    """``BUILDPEER_*`` variables reproducing ``settings``."""
    from tests.realtime.conftest import settings_env as env

    return env(settings)


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve(
    settings: Any, port: int, log_path: Path, *, workers: int = 1, **overrides: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``buildpeer serve --port PORT --workers N`` with ``settings`` (+ ``overrides``), ready to
    answer. One worker by default: a benchmark compares one server process with its peer's."""
    from devstack.process import port_open, wait_until

    served = settings.replace(
        **{
            "events_consumer_enabled": False,
            "push_consumer_enabled": False,
            "digest_scheduler_enabled": False,
            "realtime_tenant_connection_limit": 0,
            "log_level": "WARNING",
            "workers": 1,  # one server process, as every figure so far (override for more)
            **overrides,
        }
    )
    proc = spawn(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", str(workers)],
        settings_env(served),
        log_path,
    )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 60, "buildpeer serve")
        if proc.poll() is not None:
            raise RuntimeError(f"buildpeer serve exited ({proc.returncode}); see {log_path}")
        yield proc
    finally:
        stop(proc)
