"""What a push says and how it is delivered: localized text, data payload, collapse key,
priority and TTL per platform (FCM HTTP v1 ``Message`` fields)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from subscribers.i18n import N_, pick_locale, reason_text, translator
from subscribers.push.recipients import Audience, PushKind

MAX_NAME = 60

# (title, body) per kind and audience, gettext msgids; %(file)s, %(project)s, %(reason)s are filled in.
_TEXTS: dict[tuple[PushKind, Audience], tuple[str, str]] = {
    (PushKind.FAILED, Audience.UPLOADER): (N_("Your upload failed"), N_("%(file)s: %(reason)s.")),
    (PushKind.QUARANTINED, Audience.UPLOADER): (
        N_("File quarantined"),
        N_("%(file)s was quarantined: %(reason)s."),
    ),
    (PushKind.COMPLETED, Audience.UPLOADER): (
        N_("File ready"),
        N_("%(file)s is now available in %(project)s."),
    ),
    (PushKind.QUARANTINED, Audience.ADMIN): (
        N_("File quarantined in %(project)s"),
        N_("%(file)s was quarantined: %(reason)s."),
    ),
}

# Android notification channels (the app creates them; users can tune each in settings).
ANDROID_CHANNEL_ALERTS = "buildpeer_alerts"  # failed / quarantined: high importance, sound
ANDROID_CHANNEL_UPDATES = "buildpeer_updates"  # processing completed: default importance


def _short(text: str, limit: int = MAX_NAME) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def localized_text(
    kind: PushKind, audience: Audience, locale: str, *, file_name: str, project_name: str, reason: str | None
) -> tuple[str, str]:
    tr = translator(locale)
    title, body = _TEXTS[(kind, audience)]
    values = {
        "file": _short(file_name) or "—",
        "project": _short(project_name, 40) or "—",
        "reason": reason_text(reason, tr.locale),
    }
    return tr.gettext(title, **values), tr.gettext(body, **values)


@dataclass(frozen=True, slots=True)
class UploadFacts:
    """What the push is about (from the event, completed by the upload row)."""

    event_id: uuid.UUID
    upload_id: uuid.UUID
    project_id: uuid.UUID
    status: str
    reason: str | None
    file_name: str
    project_name: str


@dataclass(frozen=True, slots=True)
class PushMessage:
    """The keyword arguments of pyfcm's ``parse_payload`` for one device."""

    token: str
    title: str
    body: str
    data: dict[str, str]
    android: dict[str, Any] | None = None
    apns: dict[str, Any] | None = None
    webpush: dict[str, Any] | None = None

    def payload_kwargs(self) -> dict[str, Any]:
        return {
            "fcm_token": self.token,
            "notification_title": self.title,
            "notification_body": self.body,
            "data_payload": self.data,
            "android_config": self.android,
            "apns_config": self.apns,
            "webpush_config": self.webpush,
        }


def deep_link(public_url: str, facts: UploadFacts) -> str:
    return f"{public_url.rstrip('/')}/projects/{facts.project_id}/uploads/{facts.upload_id}"


def collapse_key(upload_id: uuid.UUID) -> str:
    return f"upload-{upload_id}"


def build_message(
    *,
    token: str,
    platform: str,
    locale: str,
    kind: PushKind,
    audience: Audience,
    critical: bool,
    facts: UploadFacts,
    public_url: str,
    ttl_seconds: int,
    now: datetime,
    badge: int | None = None,
) -> PushMessage:
    """``badge``: the user's unread inbox count (the app icon's badge)."""
    title, body = localized_text(
        kind,
        audience,
        locale,
        file_name=facts.file_name,
        project_name=facts.project_name,
        reason=facts.reason,
    )
    link = deep_link(public_url, facts)
    high = kind in (PushKind.FAILED, PushKind.QUARANTINED)
    data = {
        "type": kind.value,
        "event_id": str(facts.event_id),
        "upload_id": str(facts.upload_id),
        "project_id": str(facts.project_id),
        "status": facts.status,
        "reason": facts.reason or "",
        "deep_link": link,
        "critical": "true" if critical else "false",
        "locale": pick_locale(locale),
    }
    key = collapse_key(facts.upload_id)
    android = apns = webpush = None
    if platform == "android":
        android = {
            "collapse_key": key,
            "priority": "high" if high else "normal",
            "ttl": f"{ttl_seconds}s",
            "notification": {
                "tag": key,  # one notification per upload: a later one replaces it
                "click_action": "OPEN_UPLOAD",
                "channel_id": ANDROID_CHANNEL_ALERTS if high else ANDROID_CHANNEL_UPDATES,
                **({"notification_count": badge} if badge is not None else {}),
            },
        }
    elif platform == "ios":
        expiration = int((now + timedelta(seconds=ttl_seconds)).timestamp()) if ttl_seconds else 0
        aps: dict[str, Any] = {"thread-id": f"project-{facts.project_id}"}  # grouped per project
        if high:
            aps["sound"] = "default"  # only failures and quarantines make a sound
        if badge is not None:
            aps["badge"] = badge
        apns = {
            "headers": {
                "apns-collapse-id": key,
                "apns-priority": "10" if high else "5",
                "apns-expiration": str(expiration),
                "apns-push-type": "alert",
            },
            "payload": {"aps": aps},
        }
    else:
        webpush = {
            "headers": {
                "TTL": str(ttl_seconds),
                "Urgency": "high" if high else "normal",
                "Topic": facts.upload_id.hex,
            },
            "data": data,
        }
        if link.startswith("https://"):
            webpush["fcm_options"] = {"link": link}
    return PushMessage(
        token=token, title=title, body=body, data=data, android=android, apns=apns, webpush=webpush
    )
