from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.settings import Settings, SettingsError, describe


def test_defaults_and_parsing() -> None:
    s = Settings.from_env(
        {
            "BUILDPEER_PORT": "9000",
            "BUILDPEER_S3_ACCELERATE": "true",
            "BUILDPEER_ALLOWED_TYPES": "image/jpeg, application/pdf",
        }
    )
    assert s.port == 9000 and s.s3_accelerate is True
    assert s.allowed_types == ("image/jpeg", "application/pdf")
    assert Settings.from_env({}).status_cache_ttl_seconds == 30


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUILDPEER_DATABASE_URL", "mysql://x@y/z"),
        ("BUILDPEER_DATABASE_URL", "postgresql://host:notaport/db"),
        ("BUILDPEER_REDIS_URL", "http://localhost"),
        ("BUILDPEER_PORT", "eighty"),
        ("BUILDPEER_PORT", "70000"),
        ("BUILDPEER_S3_ACCELERATE", "maybe"),
        ("BUILDPEER_DEFAULT_TIMEZONE", "Mars/Olympus"),
        ("BUILDPEER_JWT_SECRET", "short"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable + ":")


def test_every_setting_is_documented() -> None:
    rows = describe()
    assert rows and all(doc for _, _, doc in rows)


def test_malformed_database_url_gives_one_line_and_nonzero_exit(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDPEER_")}
    env["BUILDPEER_DATABASE_URL"] = "postgresql://user@host:99999999/db"
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "BUILDPEER_DATABASE_URL" in lines[0]
