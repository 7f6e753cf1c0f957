"""Embedded ClamAV: Debian's clamd on 127.0.0.1, on the best signature database found.

clamd refuses to start without signatures. The system's freshclam database
(``/var/lib/clamav``) is used when it holds any; otherwise the project's test database
(``tests/data/clamav/test.hdb``: the EICAR test file's MD5 signature, nothing else).
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from devstack.process import ManagedProcess, free_port, wait_until
from processors.scan.clamd import ping

SYSTEM_DATABASE = Path("/var/lib/clamav")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_TEST_DATABASE = PROJECT_ROOT / "tests" / "data" / "clamav"
# The committed configuration, shared with production; only LOCAL_KEYS are replaced here.
CONFIG_TEMPLATE = PROJECT_ROOT / "infra" / "clamd.conf"
LOCAL_KEYS = frozenset(
    {
        "Foreground",
        "TCPAddr",
        "TCPSocket",
        "LocalSocket",
        "DatabaseDirectory",
        "LogFile",
        "TemporaryDirectory",
    }
)
SIGNATURE_SUFFIXES = (".cvd", ".cld", ".cud", ".hdb", ".hsb", ".mdb", ".msb", ".ndb", ".ldb", ".cdb", ".ign2")
# The EICAR test file's MD5:size:name (in case the project's test folder is not shipped).
EICAR_SIGNATURE = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"


def clamd_binary() -> str:
    found = shutil.which("clamd") or next((p for p in ("/usr/sbin/clamd",) if Path(p).exists()), None)
    if found is None:
        raise RuntimeError("clamd not found: install Debian's clamav-daemon (apt-get install clamav-daemon)")
    return found


def has_signatures(folder: Path) -> bool:
    try:
        return any(p.suffix in SIGNATURE_SUFFIXES and p.stat().st_size > 0 for p in folder.iterdir())
    except OSError:
        return False


class EmbeddedClamd:
    """``start()`` / ``stop()``; ``url`` is what ``BUILDPEER_CLAMD_URL`` should be set to,
    ``database`` says which signatures were loaded."""

    def __init__(
        self,
        var_dir: Path,
        *,
        port: int | None = None,
        database_dir: Path | None = None,
        config_template: Path = CONFIG_TEMPLATE,
    ) -> None:
        self.dir = (var_dir / "clamav").resolve()
        self.port = port or free_port(33310)
        self.config_template = config_template
        self.database_dir = database_dir or self._choose_database()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        if self.database_dir == SYSTEM_DATABASE:
            return f"system freshclam database ({SYSTEM_DATABASE})"
        return f"test database with the EICAR signature only ({self.database_dir})"

    def _choose_database(self) -> Path:
        if has_signatures(SYSTEM_DATABASE):
            return SYSTEM_DATABASE
        if has_signatures(PROJECT_TEST_DATABASE):
            return PROJECT_TEST_DATABASE
        fallback = self.dir / "test-db"
        fallback.mkdir(parents=True, exist_ok=True)
        (fallback / "test.hdb").write_text(EICAR_SIGNATURE)
        return fallback

    def _write_config(self) -> Path:
        """The committed configuration with this machine's address and folders."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shared = [
            line
            for line in self.config_template.read_text().splitlines()
            if line.split(maxsplit=1)[:1] and line.split(maxsplit=1)[0] not in LOCAL_KEYS
        ]
        local = [
            "Foreground yes",
            "TCPAddr 127.0.0.1",
            f"TCPSocket {self.port}",
            f"DatabaseDirectory {self.database_dir}",
            f"LogFile {self.dir / 'clamd.log'}",
            f"TemporaryDirectory {self.dir}",
        ]
        config = self.dir / "clamd.conf"
        config.write_text("\n".join([*shared, *local, ""]))
        return config

    def start(self, timeout: float = 120.0) -> None:
        config = self._write_config()
        self.process = ManagedProcess(
            "clamd",
            [clamd_binary(), "-c", str(config)],
            log_path=self.dir / "clamd.out",
            stop_signal=signal.SIGTERM,
        )
        self.process.start()

        def ready() -> bool:
            assert self.process is not None
            self.process.check_alive()
            return ping(self.url, timeout=1.0)

        wait_until(ready, timeout, "clamd")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None
