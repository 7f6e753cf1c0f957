"""The processors' Lambda zip: every handler the template names is inside, nothing local
leaks in, and the build is reproducible (same sources, same bytes)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from infra import package
from tests.infra.conftest import load


def test_zip_holds_every_handler_the_template_names(tmp_path: Path) -> None:
    out = tmp_path / "processors.zip"
    package.build(out, deps=False)
    names = set(zipfile.ZipFile(out).namelist())
    handlers = [
        fn["Properties"]["Handler"]
        for fn in load("processors.yaml")["Resources"].values()
        if fn["Type"] == "AWS::Lambda::Function"
    ]
    assert len(handlers) == 6
    for handler in handlers:
        module = handler.rsplit(".", 1)[0]
        assert module.replace(".", "/") + ".py" in names, handler
        assert importlib.util.find_spec(module) is not None
    assert {"core/resources.py", "core/migrations/0001_foundation.sql", "processors/__init__.py"} <= names
    assert not any(
        "__pycache__" in n or n.endswith(".pyc") or n.startswith(("server/", "tests/")) for n in names
    )


def test_build_is_reproducible(tmp_path: Path) -> None:
    first = package.build(tmp_path / "a.zip", deps=False)
    second = package.build(tmp_path / "b.zip", deps=False)
    assert first == second
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_requirements_come_from_pyproject(tmp_path: Path) -> None:
    specs = package.requirements()
    assert len(specs) == len(package.LAMBDA_REQUIREMENTS)
    assert any(s.startswith("aws-lambda-powertools>=") for s in specs)
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["boto3>=1"]\n')
    try:
        package.requirements(tmp_path / "pyproject.toml")
    except SystemExit as exc:
        assert "asyncpg" in str(exc)
    else:
        raise AssertionError("a missing requirement must stop the build")
