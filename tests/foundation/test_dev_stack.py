"""`buildpeer dev` from nothing: serves /health, and a second run keeps the first's data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from devstack.process import free_port, wait_until


def _env(var_dir: Path, port: int, metrics_port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDPEER_")}
    env.update(
        BUILDPEER_VAR_DIR=str(var_dir), BUILDPEER_PORT=str(port), BUILDPEER_METRICS_PORT=str(metrics_port)
    )
    return env


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run_dev(var_dir: Path, port: int, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev"],
        env=_env(var_dir, port, metrics_port),
        cwd=var_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=open(var_dir.parent / "dev.log", "ab"),
    )
    wait_until(lambda: proc.poll() is not None or _healthy(f"http://127.0.0.1:{port}/health"), 120, "dev")
    assert proc.poll() is None, (var_dir.parent / "dev.log").read_text()[-2000:]
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> list[int]:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    return children


def _cli(var_dir: Path, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        env=_env(var_dir, 0),
        cwd=var_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


def test_dev_serves_health_and_keeps_data_between_runs(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    port, metrics_port = free_port(), free_port()
    first = _run_dev(var_dir, port, metrics_port)
    try:
        # /metrics: on the internal listener dev announces, not on the public port.
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert metrics_url in (var_dir.parent / "dev.log").read_text()
        assert httpx.get(metrics_url, timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 404
        tenant = _cli(var_dir, "tenant", "create", "--name", "Persistente SA")
        demo = json.loads((var_dir / "demo.json").read_text())
        env_file = (var_dir / "dev.env").read_text()
        assert env_file.count("BUILDPEER_DATABASE_URL=") == 1
        for variable in ("CLAMD_URL", "FCM_CREDENTIALS", "FCM_ENDPOINT", "SMTP_URL"):
            assert f"BUILDPEER_{variable}=" in env_file, variable
        # short SQS long polls (nothing set them), so a stop does not wait out 20 s polls
        assert "BUILDPEER_WORKER_WAIT_SECONDS=2\n" in env_file
        commands = [" ".join(c.cmdline()) for c in psutil.Process(first.pid).children(recursive=True)]
        assert any("cli.main worker" in c for c in commands), commands
        assert any("clamd" in c for c in commands), commands
    finally:
        children = _stop(first)
    # Ctrl-C stopped every process it started (PostgreSQL, Redis, ...).
    wait_until(
        lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in children),
        30,
        "children exit",
    )

    second = _run_dev(var_dir, port)
    try:
        assert json.loads((var_dir / "demo.json").read_text()) == demo
        project = _cli(var_dir, "project", "create", "--tenant", tenant["tenant_id"], "--name", "Obra 2")
        assert project["tenant_id"] == tenant["tenant_id"]  # the first run's tenant still exists
    finally:
        _stop(second)
