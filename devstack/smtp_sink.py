"""A local SMTP sink (aiosmtpd): every message is accepted and kept as an ``.eml`` file
under its directory (``./var/mail/`` in dev) and in memory, for `buildpeer dev` and tests."""

from __future__ import annotations

import email
import email.policy
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.process import free_port


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    path: Path | None

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        self._sink._keep(envelope.mail_from, tuple(envelope.rcpt_tos), data)
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._mails: list[ReceivedMail] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _keep(self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> None:
        path = None
        if self.directory is not None:
            path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
            path.write_bytes(data)
        with self._lock:
            self._mails.append(ReceivedMail(mail_from, rcpt_tos, data, path))

    @property
    def mails(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._mails)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.mails if address.lower() in (r.lower() for r in m.rcpt_tos)]
