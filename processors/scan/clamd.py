"""A minimal clamd client: INSTREAM over TCP or a Unix socket.

Only two answers count as a verdict: ``stream: OK`` (clean) and ``stream: <name> FOUND``
(infected). Anything else — refused connection, timeout, an ERROR reply — raises, so an
unreachable or unhappy scanner can never make a file look clean.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import Transient

MAX_CHUNK = 1024 * 1024


class ClamdUnavailable(Transient):
    """clamd could not be reached or did not answer: retry, never treat as clean."""


class ClamdError(Transient):
    """clamd answered with an error (e.g. its stream size limit, out of memory): retried like
    an outage, dead-lettered after the queue's receives if it persists."""


@dataclass(frozen=True, slots=True)
class Verdict:
    infected: bool
    signature: str | None = None


def connect(url: str, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
            return sock
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            return socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    except OSError as exc:
        raise ClamdUnavailable(f"clamd at {url} is unreachable: {exc}") from exc
    raise ValueError(f"clamd URL must be tcp://host:port or unix:///path, got {url!r}")


def ping(url: str, timeout: float = 5.0) -> bool:
    try:
        with connect(url, timeout) as sock:
            sock.sendall(b"zPING\0")
            return _read_reply(sock) == "PONG"
    except (ClamdUnavailable, OSError):
        return False


def _read_reply(sock: socket.socket) -> str:
    data = bytearray()
    while not data.endswith(b"\0"):
        piece = sock.recv(4096)
        if not piece:
            break
        data.extend(piece)
    return data.rstrip(b"\0").decode("utf-8", "replace").strip()


def instream(url: str, chunks: Iterable[bytes], *, timeout: float = 120.0) -> Verdict:
    """Stream ``chunks`` to clamd and return its verdict."""
    with connect(url, timeout) as sock:
        try:
            sock.sendall(b"zINSTREAM\0")
            for chunk in chunks:
                view = memoryview(chunk)
                for start in range(0, len(view), MAX_CHUNK):
                    piece = view[start : start + MAX_CHUNK]
                    sock.sendall(struct.pack(">I", len(piece)))
                    sock.sendall(piece)
            sock.sendall(struct.pack(">I", 0))
            reply = _read_reply(sock)
        except (TimeoutError, ConnectionError) as exc:
            raise ClamdUnavailable(f"clamd at {url} stopped answering: {exc}") from exc
    return parse_reply(reply)


def parse_reply(reply: str) -> Verdict:
    if not reply:
        raise ClamdUnavailable("clamd closed the connection without a verdict")
    _, _, result = reply.partition(": ")
    if result == "OK":
        return Verdict(infected=False)
    if result.endswith(" FOUND"):
        return Verdict(infected=True, signature=result.removesuffix(" FOUND"))
    raise ClamdError(f"clamd: {reply}")
