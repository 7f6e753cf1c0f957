"""The MIME message of a digest: text + HTML alternatives and the RFC 8058 headers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from subscribers.digest.render import RenderedEmail


def sender_domain(from_address: str) -> str:
    _, address = parseaddr(from_address)
    return address.rpartition("@")[2] or "buildpeer.local"


def build_email(
    rendered: RenderedEmail,
    *,
    from_address: str,
    to_address: str,
    unsubscribe_url: str,
    now: datetime | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to_address
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = make_msgid("digest", domain=sender_domain(from_address))
    message["Auto-Submitted"] = "auto-generated"
    message["List-Id"] = f"BuildPeer daily digest <digest.{sender_domain(from_address)}>"
    # RFC 8058: a POST of "List-Unsubscribe=One-Click" to this HTTPS URI unsubscribes.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    message["Content-Language"] = rendered.locale  # after set_content, which drops Content-* headers
    return message
