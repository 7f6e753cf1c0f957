"""``buildpeer upload FILE --project P``: the resumable uploader (:mod:`cli.uploader`)."""

from __future__ import annotations

import argparse
import os
import uuid
from dataclasses import asdict
from pathlib import Path

from cli import CommandError
from cli.output import add_json_flag, emit
from cli.uploader import Uploader, UploadError
from core.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upload",
        help="upload a file to a project (resumable: run it again after an interruption)",
    )
    parser.add_argument("file", type=Path, help="the file to upload")
    parser.add_argument("--project", required=True, help="project id")
    parser.add_argument("--type", dest="content_type", help="MIME type (default: from the file name)")
    parser.add_argument("--api-url", help="API base URL (default: $BUILDPEER_API_URL)")
    parser.add_argument("--token", help="bearer token (default: $BUILDPEER_TOKEN)")
    parser.add_argument("--state-dir", type=Path, help="where resume state is kept")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        uuid.UUID(args.project)
    except ValueError:
        raise CommandError(f"--project must be a project id (UUID), not {args.project!r}") from None
    api_url = args.api_url or os.environ.get("BUILDPEER_API_URL") or ""
    token = args.token or os.environ.get("BUILDPEER_TOKEN") or ""
    try:
        with Uploader(api_url, token, state_dir=args.state_dir) as uploader:
            result = uploader.upload(args.file, args.project, content_type=args.content_type)
    except UploadError as exc:
        raise CommandError(str(exc)) from exc
    how = (
        f"resumed, sent {result.parts_sent} of {result.parts} parts"
        if result.resumed
        else f"{result.parts} parts"
    )
    emit(
        args,
        asdict(result),
        f"uploaded {args.file} ({result.size} bytes, {how}) sha256 {result.sha256} id {result.id}",
    )
    return 0
