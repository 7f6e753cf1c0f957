"""Printing results: human lines by default, one JSON document with ``--json``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def emit(args: argparse.Namespace, result: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(result, default=str).decode() + "\n")
    else:
        print(human)
