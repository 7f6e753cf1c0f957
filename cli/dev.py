"""``buildpeer dev``: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

from cli import CommandError
from cli.serve import serve
from core.logging import configure_logging
from core.settings import Settings
from devstack.stack import DevStack, DevStackError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dev", help="start the all-in-one local stack")
    parser.add_argument("--port", type=int, default=None)
    # dev.env describes the *previous* run's services; dev starts its own.
    parser.set_defaults(handler=run, skip_dev_env=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    if args.port:
        settings = settings.replace(port=args.port)
    stack = DevStack(settings)
    children: list[subprocess.Popen[bytes]] = []
    # SIGTERM stops dev as Ctrl-C does. Without this, uvicorn re-raises the SIGTERM it drained
    # on with the default action, which ends this process before the cleanup below: the
    # embedded PostgreSQL, clamd, ... (own sessions, so no signal reaches them) were left running.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            settings = stack.start()
        except DevStackError as exc:
            raise CommandError(str(exc)) from exc
        env_path = stack.write_env()
        # Background processes: the local Lambda runtime for the processors.
        children.append(spawn(["worker"]))
        say = stack.say
        say("")
        say(f"BuildPeer dev stack on http://{settings.host}:{settings.port}  (Ctrl-C stops everything)")
        say(f"  environment for other terminals: {env_path}")
        if settings.metrics_port:
            say(f"  metrics (internal)  http://{settings.metrics_host}:{settings.metrics_port}/metrics")
        else:
            say("  metrics             off (BUILDPEER_METRICS_PORT=0)")
        say(f"  demo tenant {stack.demo['tenant_id']}, projects {', '.join(stack.demo['projects'])}")
        tokens = stack.tokens()
        for role, token in tokens.items():
            say(f"  token {role:<13} {token}")
        say(
            f"  dashboard           http://{settings.host}:{settings.port}/"
            f"?project={stack.demo['projects'][0]}&token={tokens['field_worker']}"
        )
        say("")
        serve(settings, host=settings.host, port=settings.port)
    finally:
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM ends dev at once
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        stack.stop()
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """A ``buildpeer`` sub-command as a child process; it reads ``var/dev.env`` like any
    other command run beside the stack."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=dict(os.environ))
