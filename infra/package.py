"""Build the processors' Lambda zip: ``python -m infra.package --out dist/processors.zip``.

The zip holds ``core/`` and ``processors/`` (the handlers ``processors.<name>.handler.handler``)
plus, unless ``--no-deps``, the processors' third-party packages installed for the Lambda
platform (manylinux x86_64, CPython 3.11) with the versions pyproject.toml allows. Entries are
sorted and time-stamped 1980-01-01, so the same sources give the same bytes: the printed
sha256 names the S3 key, and an unchanged build does not redeploy the functions.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "processors")
# Third-party packages the processors import; their version ranges come from pyproject.toml.
LAMBDA_REQUIREMENTS = (
    "asyncpg",
    "redis",
    "boto3",
    "orjson",
    "msgpack",
    "Pillow",
    "pillow-heif",
    "pypdfium2",
    "pytesseract",
    "aws-lambda-powertools",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "tzdata",
)
EXCLUDED_PARTS = {"__pycache__", "tests"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The pyproject dependency specifiers of :data:`LAMBDA_REQUIREMENTS`."""
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    by_name = {re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower(): spec for spec in declared}
    missing = [n for n in LAMBDA_REQUIREMENTS if n.lower() not in by_name]
    if missing:
        raise SystemExit(f"not declared in pyproject.toml: {', '.join(missing)}")
    return [by_name[n.lower()] for n in LAMBDA_REQUIREMENTS]


def _install(target: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
            "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
            "--only-binary=:all:", *requirements(),
        ],
        check=True,
    )  # fmt: skip


def _files(base: Path, roots: list[Path]) -> list[tuple[Path, str]]:
    out = []
    for root in roots:
        for path in root.rglob("*"):
            rel = path.relative_to(base)
            if path.is_file() and not EXCLUDED_PARTS & set(rel.parts) and path.suffix != ".pyc":
                out.append((path, rel.as_posix()))
    return sorted(out, key=lambda item: item[1])


def build(out: Path, *, deps: bool = True, source: Path = ROOT) -> str:
    """Write the zip; return its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        entries = _files(source, [source / p for p in PACKAGES])
        if deps:
            _install(Path(tmp))
            entries += _files(Path(tmp), [Path(tmp)])
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, name in sorted(entries, key=lambda item: item[1]):
                info = zipfile.ZipInfo(name, FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "processors.zip")
    parser.add_argument("--no-deps", action="store_true", help="sources only (deps from a layer)")
    args = parser.parse_args(argv)
    digest = build(args.out, deps=not args.no_deps)
    print(f"{args.out} sha256={digest}")
    print(f"upload as: processors-{digest[:16]}.zip (the CodeKey parameter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
