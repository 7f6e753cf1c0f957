"""The resumable field uploader behind ``buildpeer upload FILE --project P``.

Multipart through the same Companion routes a browser uses. A state file remembers the
upload (key + uploadId) after every part; after a crash or ``kill -9`` the next run asks
the API which parts S3 already holds and sends only the missing ones. Network errors,
429 and 5xx are retried with exponential backoff (1, 2, 4, 8, 16 s, capped at 30 s);
a 403 from S3 (an expired or refused URL) gets the part re-signed.

Checksums end to end: the file's SHA-256 is computed before the upload starts and declared
when it is created, and every part is signed with its own SHA-256 (S3 refuses a part whose
bytes differ: a flipped bit on a site network is caught at the part, not after processing);
the processors then compare the whole file's digest with the declared one.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from server.uploads.parts import MIN_PART_SIZE, part_count

EXTRA_TYPES = {
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".dwg": "image/vnd.dwg",
    ".dxf": "image/vnd.dxf",
    ".webp": "image/webp",
}
STATE_VERSION = 1


class UploadError(Exception):
    """The upload cannot go on (a refused request, retries exhausted); the message says why."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delays(self) -> list[float]:
        return [min(self.cap_seconds, self.base_seconds * 2**i) for i in range(self.retries)]


class Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def guess_type(path: Path) -> str:
    ext = path.suffix.lower()
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def default_state_dir() -> Path:
    configured = os.environ.get("BUILDPEER_UPLOAD_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "buildpeer" / "uploads"


@dataclass
class UploadState:
    api_url: str
    project_id: str
    path: str
    size: int
    mtime_ns: int
    content_type: str
    key: str
    upload_id: str
    id: str
    part_size: int
    etags: dict[str, str] = field(default_factory=dict)
    version: int = STATE_VERSION
    sha256: str = ""  # declared at create ("" in a state file from before checksums)


class StateFile:
    """One JSON file per (server, project, file path, size, mtime); written atomically."""

    def __init__(
        self, directory: Path, api_url: str, project_id: str, path: Path, stat: os.stat_result
    ) -> None:
        ident = f"{api_url}|{project_id}|{path}|{stat.st_size}|{stat.st_mtime_ns}"
        self.path = directory / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".json")

    def load(self) -> UploadState | None:
        try:
            raw = orjson.loads(self.path.read_bytes())
            state = UploadState(**raw)
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None
        return state if state.version == STATE_VERSION else None

    def save(self, state: UploadState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(asdict(state)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class Progress:
    """A bar on stderr when it is a terminal, one line per part otherwise."""

    def __init__(self, total: int, name: str, stream: IO[str] | None = None) -> None:
        self.total = max(total, 1)
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.started = time.monotonic()

    def advance(self, nbytes: int, note: str = "") -> None:
        self.done += nbytes
        pct = 100 * self.done / self.total
        rate = self.done / max(time.monotonic() - self.started, 1e-6) / 1024**2
        mib = f"{self.done / 1024**2:.1f}/{self.total / 1024**2:.1f} MiB"
        if self.tty:
            filled = int(30 * self.done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r{self.name} [{bar}] {pct:5.1f}% {mib} {rate:.1f} MiB/s {note:<20}")
        else:
            self.stream.write(f"{self.name}: {pct:5.1f}% {mib} {note}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class UploadResult:
    id: str
    key: str
    size: int
    sha256: str
    parts: int
    parts_sent: int
    resumed: bool
    location: str | None


class Uploader:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        state_dir: Path | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stream: IO[str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not api_url:
            raise UploadError("no API URL: pass --api-url or set BUILDPEER_API_URL")
        if not token:
            raise UploadError("no token: pass --token or set BUILDPEER_TOKEN")
        self.api_url = api_url.rstrip("/")
        self.state_dir = state_dir or default_state_dir()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.stream = stream
        self.api = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )
        self.s3 = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.api.close()
        self.s3.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP with retries -------------------------------------------------------------

    def _with_retries(self, what: str, attempt: Callable[[], Any]) -> Any:
        delays = self.retry.delays()
        for i in range(len(delays) + 1):
            try:
                return attempt()
            except Retryable as exc:
                if i == len(delays):
                    raise UploadError(f"{what}: giving up after {i + 1} attempts ({exc})") from None
                delay = delays[i] if exc.retry_after is None else min(self.retry.cap_seconds, exc.retry_after)
                self._say(f"{what}: {exc}; retrying in {delay:g} s")
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        def attempt() -> Any:
            try:
                r = self.api.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise Retryable(f"network error: {type(exc).__name__}") from exc
            if r.status_code >= 500 or r.status_code == 429:
                retry_after = r.headers.get("retry-after")
                raise Retryable(
                    f"HTTP {r.status_code}",
                    float(retry_after) if retry_after and retry_after.isdigit() else None,
                )
            if r.status_code >= 400:
                raise ApiRefused(r.status_code, _message(r))
            return r.json()

        return self._with_retries(f"{method} {path}", attempt)

    def _put_part(self, state: UploadState, number: int, chunk: bytes) -> str:
        url: str | None = None
        headers: dict[str, str] = {}
        params = {"key": state.key}
        if state.sha256:  # the part's own digest is signed into its URL
            params["sha256"] = hashlib.sha256(chunk).hexdigest()

        def attempt() -> str:
            nonlocal url, headers
            if url is None:
                signed = self._api("GET", f"/s3/multipart/{state.upload_id}/{number}", params=params)
                url, headers = signed["url"], dict(signed.get("headers") or {})
            try:
                r = self.s3.put(url, content=chunk, headers=headers)
            except httpx.TransportError as exc:
                raise Retryable(f"network error: {type(exc).__name__}") from exc
            if r.status_code == 403:
                url = None  # expired or refused signature: sign again
                raise Retryable("S3 refused the URL (403); re-signing")
            if r.status_code >= 500 or r.status_code in (408, 429):
                raise Retryable(f"S3 HTTP {r.status_code}")
            if r.status_code == 400 and "BadDigest" in r.text:
                raise Retryable("S3 received other bytes than the part's sha256 (BadDigest)")
            if r.status_code >= 400:
                raise UploadError(f"S3 refused part {number}: HTTP {r.status_code} {r.text[:200]}")
            etag = r.headers.get("etag")
            if not etag:
                raise UploadError("S3 answered without an ETag")
            return etag

        result: str = self._with_retries(f"part {number}", attempt)
        return result

    def _say(self, text: str) -> None:
        (self.stream or sys.stderr).write(text + "\n")

    # --- the upload ----------------------------------------------------------------------

    def upload(self, path: Path, project_id: str, *, content_type: str | None = None) -> UploadResult:
        path = path.resolve()
        try:
            stat = path.stat()
        except OSError as exc:
            raise UploadError(f"cannot read {path}: {exc.strerror}") from None
        if not path.is_file():
            raise UploadError(f"{path} is not a file")
        mime = content_type or guess_type(path)
        state_file = StateFile(self.state_dir, self.api_url, project_id, path, stat)
        state = state_file.load()
        stored: dict[int, dict[str, Any]] = {}
        resumed = False
        if state is not None:
            try:
                listed = self._api("GET", f"/s3/multipart/{state.upload_id}", params={"key": state.key})
                stored = {int(p["PartNumber"]): p for p in listed}
                resumed = True
                self._say(f"resuming upload {state.id}: {len(stored)} part(s) already stored")
            except ApiRefused as exc:
                self._say(f"previous upload cannot be resumed ({exc}); starting again")
                state_file.remove()
                state = None
        if state is None:
            file_sha256 = file_digest(path)
            created = self._api(
                "POST",
                "/s3/multipart",
                json={
                    "filename": path.name,
                    "type": mime,
                    "size": stat.st_size,
                    "sha256": file_sha256,
                    "metadata": {"projectId": project_id, "name": path.name, "type": mime},
                },
            )
            state = UploadState(
                api_url=self.api_url,
                project_id=project_id,
                path=str(path),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                content_type=mime,
                key=created["key"],
                upload_id=created["uploadId"],
                id=created.get("id") or "",
                part_size=int(created.get("partSize") or MIN_PART_SIZE),
                sha256=file_sha256,
            )
            state_file.save(state)
        return self._send(path, state, state_file, stored, resumed)

    def _send(
        self,
        path: Path,
        state: UploadState,
        state_file: StateFile,
        stored: dict[int, dict[str, Any]],
        resumed: bool,
    ) -> UploadResult:
        digest = hashlib.sha256()
        total_parts = part_count(state.size, state.part_size)
        progress = Progress(state.size, path.name, self.stream)
        parts: list[dict[str, Any]] = []
        sent = 0
        done_bytes = 0
        with open(path, "rb") as f:
            for number in range(1, total_parts + 1):
                chunk = f.read(state.part_size)
                digest.update(chunk)
                checksum = (
                    {"ChecksumSHA256": base64.b64encode(hashlib.sha256(chunk).digest()).decode()}
                    if state.sha256
                    else {}
                )
                have = stored.get(number)
                if have is not None and int(have["Size"]) == len(chunk):
                    parts.append({"PartNumber": number, "ETag": have["ETag"], **checksum})
                    progress.advance(len(chunk), f"part {number}/{total_parts} already stored")
                    done_bytes += len(chunk)
                    continue
                etag = self._put_part(state, number, chunk)
                sent += 1
                done_bytes += len(chunk)
                parts.append({"PartNumber": number, "ETag": etag, **checksum})
                state.etags[str(number)] = etag
                state_file.save(state)
                progress.advance(len(chunk), f"part {number}/{total_parts} sent")
                self._report(state, done_bytes, len(parts))
            if f.read(1):
                raise UploadError(f"{path} grew while it was uploaded; run again")
        progress.finish()
        sha256 = digest.hexdigest()
        if state.sha256 and sha256 != state.sha256:
            raise UploadError(f"{path} changed while it was uploaded (sha256 differs); run again")
        done = self._api(
            "POST",
            f"/s3/multipart/{state.upload_id}/complete",
            params={"key": state.key},
            json={"parts": parts, "sha256": sha256},
        )
        state_file.remove()
        return UploadResult(
            id=state.id,
            key=state.key,
            size=state.size,
            sha256=sha256,
            parts=total_parts,
            parts_sent=sent,
            resumed=resumed,
            location=done.get("location"),
        )

    def _report(self, state: UploadState, bytes_done: int, parts_done: int) -> None:
        """Progress for the web and phone views; best effort, never fails the upload."""
        if not state.id:
            return
        try:
            self.api.post(
                f"/api/v1/uploads/{state.id}/progress",
                json={"bytes_done": bytes_done, "parts_done": parts_done},
            )
        except httpx.TransportError:
            pass


def file_digest(path: Path, chunk_size: int = 8 * 1024 * 1024) -> str:
    """The file's SHA-256 (hex), read once before the upload starts."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


class ApiRefused(UploadError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
        return str(body.get("error", {}).get("message") or body.get("message") or r.text[:200])
    except (ValueError, AttributeError):
        return r.text[:200]
