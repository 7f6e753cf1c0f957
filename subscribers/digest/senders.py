"""Email senders chosen by configuration: SMTP (aiosmtplib) when ``smtp_url`` is set,
else Amazon SES v2 (aioboto3, raw MIME so our headers — ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` among them — travel unchanged).

SES sends go through the stack's configuration set (``core.resources``), whose event
destination publishes bounces and complaints to SNS → the ``email-events`` queue, and
carry the tenant and user as message tags so those events find their tenant. Each send
has exactly one recipient."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aioboto3
import aiosmtplib

from core import resources
from core.settings import Settings


class SendError(RuntimeError):
    """The message was not accepted; the digest is marked failed and retried later."""


class EmailSender(Protocol):
    async def send(self, message: EmailMessage, *, tags: Mapping[str, str] | None = None) -> str:
        """Deliver to the one ``To`` address; returns the provider's message id. ``tags``
        travel with the message where the provider supports them (SES message tags)."""
        ...

    async def close(self) -> None: ...


def _address(header: str | None) -> str:
    return parseaddr(header or "")[1]


class SmtpSender:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._tls = parts.scheme == "smtps"
        self._port = parts.port or (465 if self._tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout

    async def send(self, message: EmailMessage, *, tags: Mapping[str, str] | None = None) -> str:
        try:
            await aiosmtplib.send(
                message,
                sender=_address(message["From"]),
                recipients=[_address(message["To"])],
                hostname=self._host,
                port=self._port,
                use_tls=self._tls,
                username=self._username,
                password=self._password,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendError(f"SMTP {self._host}:{self._port}: {exc}") from exc
        return str(message["Message-ID"])

    async def close(self) -> None:
        return None


class SesSender:
    def __init__(self, settings: Settings, session: aioboto3.Session | None = None) -> None:
        self._kwargs: dict[str, Any] = {"region_name": settings.aws_region}
        if settings.aws_endpoint_url:
            self._kwargs.update(
                endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        self.configuration_set = resources.ses_configuration_set_name(settings.stack)
        self._session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def send(self, message: EmailMessage, *, tags: Mapping[str, str] | None = None) -> str:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                self._session.client("sesv2", **self._kwargs)
            )
        try:
            reply = await self._client.send_email(
                FromEmailAddress=str(message["From"]),
                Destination={"ToAddresses": [_address(message["To"])]},
                Content={"Raw": {"Data": message.as_bytes()}},
                ConfigurationSetName=self.configuration_set,
                EmailTags=[{"Name": k, "Value": v} for k, v in (tags or {}).items()],
            )
        except Exception as exc:  # botocore ClientError, endpoint errors
            raise SendError(f"SES: {exc}") from exc
        return str(reply["MessageId"])

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def sender_for(settings: Settings) -> EmailSender:
    if settings.smtp_url:
        return SmtpSender(settings.smtp_url)
    return SesSender(settings)
