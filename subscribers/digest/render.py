"""Render a digest from ``templates/email/`` (Jinja2): subject, HTML (inlined CSS,
autoescaped) and a plain-text alternative, in the recipient's locale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from subscribers.digest.query import DigestData
from subscribers.digest.strings import STRINGS, long_date, short_date
from subscribers.i18n import pick_locale, reason_text

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
MAX_LISTED_PROJECTS = 50
MAX_NAME = 80


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale: str


def shorten(value: Any, limit: int = MAX_NAME) -> str:
    """One line, at most ``limit`` characters; long file names keep their extension."""
    text = " ".join(str(value).split())
    if len(text) <= limit:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and 0 < len(ext) <= 8 and len(stem) > limit // 2:
        return stem[: limit - len(ext) - 2] + "…." + ext
    return text[: limit - 1] + "…"


@lru_cache(maxsize=4)
def environment(folder: str = str(TEMPLATES)) -> Environment:
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["short"] = shorten
    return env


def context(
    data: DigestData, *, thumbnail_urls: Mapping[Any, str], unsubscribe_url: str, public_url: str
) -> dict[str, Any]:
    locale = pick_locale(data.recipient.locale)
    t = STRINGS[locale]
    day = long_date(data.day, locale)
    active = sorted((p for p in data.projects if p.uploads), key=lambda p: (-p.uploads, p.name.lower()))
    idle = [p for p in data.projects if not p.uploads]
    listed = (active + idle)[:MAX_LISTED_PROJECTS]
    return {
        "t": t,
        "locale": locale,
        "html_lang": locale,
        "day": day,
        "intro": t["intro"].format(date=day),
        "footer": t["footer"].format(tenant=data.recipient.tenant_name),
        "empty": data.empty,
        "totals": {
            "uploads": data.uploads,
            "image": data.total("image"),
            "document": data.total("document"),
            "other": data.total("other"),
            "ready": data.total("ready"),
            "failed": data.total("failed"),
            "quarantined": data.total("quarantined"),
            "in_progress": data.total("in_progress"),
        },
        "projects": listed,
        "more_projects": t["more_projects"].format(n=len(data.projects) - len(listed))
        if len(data.projects) > len(listed)
        else "",
        "thumbnails": [
            {"url": thumbnail_urls[th.upload_id], "file_name": th.file_name, "project_name": th.project_name}
            for th in data.thumbnails
            if th.upload_id in thumbnail_urls
        ],
        "failures": [
            {
                "file_name": f.file_name,
                "project_name": f.project_name,
                "status": t[f"status_{f.status}"],
                "reason": reason_text(f.reason, locale),
            }
            for f in data.failures
        ],
        "more_failures": t["more_failures"].format(n=data.more_failures) if data.more_failures > 0 else "",
        "unsubscribe_url": unsubscribe_url,
        "app_url": public_url.rstrip("/") + "/",
        "preferences_url": public_url.rstrip("/") + "/settings/notifications",
    }


def render(
    data: DigestData,
    *,
    thumbnail_urls: Mapping[Any, str],
    unsubscribe_url: str,
    public_url: str,
    templates: Path = TEMPLATES,
) -> RenderedEmail:
    ctx = context(data, thumbnail_urls=thumbnail_urls, unsubscribe_url=unsubscribe_url, public_url=public_url)
    env = environment(str(templates))
    t = ctx["t"]
    if data.empty:
        subject = t["subject_empty"].format(date=short_date(data.day, ctx["locale"]))
    else:
        active = sum(1 for p in data.projects if p.uploads)
        subject = t["subject"].format(
            date=short_date(data.day, ctx["locale"]), uploads=data.uploads, projects=active
        )
    html = env.get_template("digest.html").render(ctx)
    text = env.get_template("digest.txt").render(ctx)
    return RenderedEmail(subject=subject, html=html, text=text, locale=ctx["locale"])


def render_unsubscribe_page(
    state: str, *, locale: str, email: str = "", action: str = "", templates: Path = TEMPLATES
) -> str:
    """The one-click unsubscribe page: ``confirm`` (GET), ``done`` (POST) or ``invalid``."""
    loc = pick_locale(locale)
    return (
        environment(str(templates))
        .get_template("unsubscribe.html")
        .render(t=STRINGS[loc], locale=loc, state=state, email=email, action=action)
    )
