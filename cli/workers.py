"""``buildpeer serve --workers N``: N server processes sharing one port.

Each worker is a spawned process running the whole app (HTTP API, WebSocket hub node, events
consumer, sweepers, digest scheduler) on its own socket bound with ``SO_REUSEPORT``, so the
kernel spreads new connections over the workers. A worker behaves as one more server task:
the hub's fan-out, the events consumer and the sweepers already run in every instance (Redis
broker, competing SQS consumers, guarded status updates), and where one leader is needed
(the digest scheduler and the housekeeping it runs) the Redis lease elects it across
processes as across tasks.

The internal metrics listener: worker ``i`` serves ``/metrics`` on ``BUILDPEER_METRICS_PORT
+ i`` (each process has its own registry; a scraper reads every port and sums). The
supervisor restarts a worker that dies (after a second) and, on SIGTERM or SIGINT, stops
every worker gracefully, killing any still running after the stop timeout. Workers die
with the supervisor (``PR_SET_PDEATHSIG``): a killed task leaves no orphan serving.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from core.settings import Settings

log = logging.getLogger(__name__)
STOP_TIMEOUT = 30.0
RESTART_DELAY = 1.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    return os.cpu_count() or 1


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its own metrics port."""
    if not settings.metrics_port:
        return settings
    return settings.replace(metrics_port=settings.metrics_port + index)


def metrics_ports(settings: Settings, workers: int) -> range:
    return (
        range(settings.metrics_port, settings.metrics_port + workers) if settings.metrics_port else range(0)
    )


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the supervisor's stop still ends the workers
        pass


def _worker_main(settings: Settings, host: str, port: int, index: int) -> None:
    _die_with_parent()
    from cli.serve import serve_on_socket
    from core.logging import configure_logging

    configure_logging(settings.log_level)
    serve_on_socket(worker_settings(settings, index), reuse_port_socket(host, port))


class Supervisor:
    def __init__(self, settings: Settings, *, host: str, port: int, workers: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._procs: dict[int, BaseProcess] = {}
        self._stopping = False

    def _start(self, index: int) -> None:
        proc = self._context.Process(
            target=_worker_main,
            args=(self.settings, self.host, self.port, index),
            name=f"buildpeer-worker-{index}",
        )
        proc.start()
        self._procs[index] = proc
        log.info("server worker started", extra={"worker": index, "pid": proc.pid})

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for index in range(self.workers):
            self._start(index)
        while not self._stopping:
            time.sleep(0.2)
            for index, proc in list(self._procs.items()):
                if not proc.is_alive() and not self._stopping:
                    log.warning(
                        "server worker exited; restarting", extra={"worker": index, "code": proc.exitcode}
                    )
                    time.sleep(RESTART_DELAY)
                    if not self._stopping:
                        self._start(index)
        self._stop()
        return 0

    def _stop(self) -> None:
        for proc in self._procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
