"""The ``buildpeer`` command. Each sub-command lives in a module of ``cli``
with a ``register(subparsers)`` function; the module list below is the whole CLI."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli import CommandError
from core.settings import Settings, SettingsError

COMMAND_MODULES = (
    "cli.dev",
    "cli.serve",
    "cli.migrate",
    "cli.admin",
    "cli.worker",
    # Feature commands register here (one line each).
    "cli.digest",
    "cli.upload",
    "cli.suppression",
)

DEV_ENV = Path("var") / "dev.env"
# The commands a developer runs in a second terminal beside `buildpeer dev`: they read
# var/dev.env for unset variables. `serve` and `migrate` run in production and never do
# (nor does `dev`, which starts its own services); a new command reads it only when listed.
DEV_ENV_COMMANDS = frozenset(
    {"worker", "token", "upload", "tenant", "user", "project", "digest", "suppression"}
)


def load_dev_env(path: Path = DEV_ENV) -> None:
    """Variables written by ``buildpeer dev``, for those not already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not line.lstrip().startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildpeer", description="BuildPeer uploads & notifications")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in DEV_ENV_COMMANDS and not getattr(args, "skip_dev_env", False):
        load_dev_env(Path(os.environ.get("BUILDPEER_VAR_DIR", "var")) / "dev.env")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"buildpeer: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        result: int = args.handler(args, settings)
    except CommandError as exc:
        print(f"buildpeer {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
