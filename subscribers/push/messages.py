"""What a push says and how it is delivered: localized text, data payload, collapse key,
priority and TTL per platform (FCM HTTP v1 ``Message`` fields)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from subscribers.i18n import pick_locale, reason_text
from subscribers.push.recipients import Audience, PushKind

MAX_NAME = 60

# (title, body) per locale, kind and audience; {file}, {project}, {reason} are filled in.
_TEXTS: dict[str, dict[tuple[PushKind, Audience], tuple[str, str]]] = {
    "es": {
        (PushKind.FAILED, Audience.UPLOADER): ("No se pudo procesar tu archivo", "{file}: {reason}."),
        (PushKind.QUARANTINED, Audience.UPLOADER): (
            "Archivo en cuarentena",
            "{file} fue puesto en cuarentena: {reason}.",
        ),
        (PushKind.COMPLETED, Audience.UPLOADER): ("Archivo listo", "{file} ya está disponible en {project}."),
        (PushKind.QUARANTINED, Audience.ADMIN): (
            "Archivo en cuarentena en {project}",
            "{file} fue puesto en cuarentena: {reason}.",
        ),
    },
    "pt-BR": {
        (PushKind.FAILED, Audience.UPLOADER): ("Não foi possível processar seu arquivo", "{file}: {reason}."),
        (PushKind.QUARANTINED, Audience.UPLOADER): (
            "Arquivo em quarentena",
            "{file} foi colocado em quarentena: {reason}.",
        ),
        (PushKind.COMPLETED, Audience.UPLOADER): (
            "Arquivo pronto",
            "{file} já está disponível em {project}.",
        ),
        (PushKind.QUARANTINED, Audience.ADMIN): (
            "Arquivo em quarentena em {project}",
            "{file} foi colocado em quarentena: {reason}.",
        ),
    },
    "en": {
        (PushKind.FAILED, Audience.UPLOADER): ("Your upload failed", "{file}: {reason}."),
        (PushKind.QUARANTINED, Audience.UPLOADER): ("File quarantined", "{file} was quarantined: {reason}."),
        (PushKind.COMPLETED, Audience.UPLOADER): ("File ready", "{file} is now available in {project}."),
        (PushKind.QUARANTINED, Audience.ADMIN): (
            "File quarantined in {project}",
            "{file} was quarantined: {reason}.",
        ),
    },
}


def _short(text: str, limit: int = MAX_NAME) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def localized_text(
    kind: PushKind, audience: Audience, locale: str, *, file_name: str, project_name: str, reason: str | None
) -> tuple[str, str]:
    loc = pick_locale(locale)
    title, body = _TEXTS[loc][(kind, audience)]
    values = {
        "file": _short(file_name) or "—",
        "project": _short(project_name, 40) or "—",
        "reason": reason_text(reason, loc),
    }
    return title.format(**values), body.format(**values)


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
) -> PushMessage:
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
            "notification": {"tag": key, "click_action": "OPEN_UPLOAD"},
        }
    elif platform == "ios":
        expiration = int((now + timedelta(seconds=ttl_seconds)).timestamp()) if ttl_seconds else 0
        apns = {
            "headers": {
                "apns-collapse-id": key,
                "apns-priority": "10" if high else "5",
                "apns-expiration": str(expiration),
                "apns-push-type": "alert",
            },
            "payload": {"aps": {"sound": "default", "thread-id": f"project-{facts.project_id}"}},
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
