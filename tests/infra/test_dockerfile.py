"""The server image, checked structurally (no Docker engine here): slim base, non-root user,
health check on /health, no secrets baked in, a context that leaves local state out; and the
entrypoint that turns the FCM secret into a private file."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (INFRA / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_every_stage_is_a_pinned_slim_image() -> None:
    bases = [rest.split()[0] for k, rest in instructions() if k == "FROM"]
    # The dashboard bundle is built in a Node stage; the image that runs is slim Python.
    assert bases and all(re.fullmatch(r"(python:3\.11|node:20-\w+)-slim(-\w+)?", b) for b in bases), bases
    assert re.fullmatch(r"python:3\.11-slim-\w+", bases[-1]), bases


def test_the_image_carries_the_dashboard_bundle_and_templates() -> None:
    copies = " ".join(rest for k, rest in instructions() if k == "COPY")
    assert "--from=web /src/server/static/dist" in copies
    assert "templates" in copies


def test_runs_as_a_non_root_user() -> None:
    users = [rest for k, rest in final_stage() if k == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert [k for k, _ in final_stage()].index("USER") < [k for k, _ in final_stage()].index("CMD")


def test_health_check_probes_health() -> None:
    (check,) = [rest for k, rest in final_stage() if k == "HEALTHCHECK"]
    assert "/health" in check and "--interval" in check and "CMD" in check
    assert ("EXPOSE", "8000") in final_stage()
    assert ("CMD", '["buildpeer", "serve"]') in final_stage()


def test_no_secrets_in_the_image() -> None:
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY\b", rest, re.I), rest
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env|\.pem|var/|\.venv|credentials", rest), rest
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[0] == "**"  # allow-list: only the listed sources reach the build context
    assert {"**/.env", "**/*.pem", "**/__pycache__"} <= set(ignore)
    assert not any(
        line.startswith("!") and ("var" in line or ".venv" in line or "tests" in line) for line in ignore
    )


def test_entrypoint_writes_the_fcm_secret_to_a_private_file(tmp_path: Path) -> None:
    entrypoint = INFRA / "entrypoint.sh"
    assert os.stat(entrypoint).st_mode & stat.S_IXUSR
    env = {
        "PATH": os.environ["PATH"],
        "TMPDIR": str(tmp_path),
        "FCM_CREDENTIALS_JSON": '{"type": "service_account"}',
    }
    script = 'printf "%s|%s" "$BUILDPEER_FCM_CREDENTIALS" "${FCM_CREDENTIALS_JSON:-unset}"'
    out = subprocess.run(
        [str(entrypoint), "sh", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    path, leftover = out.stdout.split("|")
    assert leftover == "unset"  # the JSON itself is not left in the server's environment
    assert Path(path).read_text() == '{"type": "service_account"}'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_entrypoint_without_the_secret_just_runs_the_command() -> None:
    env = {"PATH": os.environ["PATH"]}
    out = subprocess.run(
        [str(INFRA / "entrypoint.sh"), "sh", "-c", 'echo "${BUILDPEER_FCM_CREDENTIALS:-none}"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "none"
