"""Render a digest from ``templates/email/`` (Jinja2 + its i18n extension over our gettext
catalogs): subject, HTML (inlined CSS, autoescaped) and a plain-text alternative, in the
recipient's locale, with CLDR plurals and Babel's dates and numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from subscribers.digest.query import DigestData
from subscribers.i18n import Translator, pick_locale, reason_text, translator

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
MAX_LISTED_PROJECTS = 50
MAX_NAME = 80


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale: str
    headline: str = ""  # the inbox item's title (the subject says the rest)


def shorten(value: Any, limit: int = MAX_NAME) -> str:
    """One line, at most ``limit`` characters; long file names keep their extension."""
    text = " ".join(str(value).split())
    if len(text) <= limit:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and 0 < len(ext) <= 8 and len(stem) > limit // 2:
        return stem[: limit - len(ext) - 2] + "…." + ext
    return text[: limit - 1] + "…"


@lru_cache(maxsize=8)
def environment(folder: str, locale: str) -> Environment:
    """One environment per locale, its catalog installed (rendering never switches it)."""
    tr = translator(locale)
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(tr.translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters["short"] = shorten
    env.filters["num"] = tr.number
    return env


def subject_line(data: DigestData, tr: Translator) -> tuple[str, str]:
    """(subject, headline): ``Resumen del 9 mar: 1 archivo en 1 proyecto``."""
    active = sum(1 for p in data.projects if p.uploads)
    files = tr.ngettext("%(num)s file", "%(num)s files", data.uploads)
    projects = tr.ngettext("%(num)s project", "%(num)s projects", active)
    if data.period == "weekly":
        start, end = tr.short_date(data.day), tr.short_date(data.last_day)
        headline = tr.gettext("Weekly digest")
        if data.empty:
            return tr.gettext("Weekly digest %(start)s–%(end)s: no activity", start=start, end=end), headline
        return (
            tr.gettext(
                "Weekly digest %(start)s–%(end)s: %(files)s in %(projects)s",
                start=start,
                end=end,
                files=files,
                projects=projects,
            ),
            headline,
        )
    headline = tr.gettext("Daily digest")
    day = tr.short_date(data.day)
    if data.empty:
        return tr.gettext("Digest for %(date)s: no activity", date=day), headline
    return tr.gettext(
        "Digest for %(date)s: %(files)s in %(projects)s", date=day, files=files, projects=projects
    ), headline


def context(
    data: DigestData, *, thumbnail_urls: Mapping[Any, str], unsubscribe_url: str, public_url: str
) -> dict[str, Any]:
    tr = translator(data.recipient.locale)
    weekly = data.period == "weekly"
    if weekly:
        day = tr.gettext(
            "%(start)s to %(end)s", start=tr.long_date(data.day), end=tr.long_date(data.last_day)
        )
        intro = tr.gettext("Here is what happened on your projects from %(period)s.", period=day)
        empty = tr.gettext("There was no activity on your projects that week.")
        heading = tr.gettext("Weekly digest")
        thumbnails_title = tr.gettext("Photos of the week")
    else:
        day = tr.long_date(data.day)
        intro = tr.gettext("Here is what happened on your projects on %(date)s.", date=day)
        empty = tr.gettext("There was no activity on your projects that day.")
        heading = tr.gettext("Daily digest")
        thumbnails_title = tr.gettext("Photos of the day")
    active = sorted((p for p in data.projects if p.uploads), key=lambda p: (-p.uploads, p.name.lower()))
    idle = [p for p in data.projects if not p.uploads]
    listed = (active + idle)[:MAX_LISTED_PROJECTS]
    hidden = len(data.projects) - len(listed)
    status = {"failed": tr.gettext("failed"), "quarantined": tr.gettext("quarantined")}
    return {
        "locale": tr.locale,
        "html_lang": tr.locale,
        "day": day,
        "heading": heading,
        "intro": intro,
        "empty_text": empty,
        "thumbnails_title": thumbnails_title,
        "footer": tr.gettext(
            "You receive this email because you follow %(tenant)s projects on BuildPeer.",
            tenant=data.recipient.tenant_name,
        ),
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
        "more_projects": tr.ngettext("and %(num)s more project", "and %(num)s more projects", hidden)
        if hidden > 0
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
                "status": status.get(f.status, f.status),
                "reason": reason_text(f.reason, tr.locale),
            }
            for f in data.failures
        ],
        "more_failures": tr.ngettext("and %(num)s more", "and %(num)s more", data.more_failures)
        if data.more_failures > 0
        else "",
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
    env = environment(str(templates), ctx["locale"])
    subject, headline = subject_line(data, translator(ctx["locale"]))
    html = env.get_template("digest.html").render(ctx)
    text = env.get_template("digest.txt").render(ctx)
    return RenderedEmail(subject=subject, html=html, text=text, locale=ctx["locale"], headline=headline)


def render_unsubscribe_page(
    state: str, *, locale: str, email: str = "", action: str = "", templates: Path = TEMPLATES
) -> str:
    """The one-click unsubscribe page: ``confirm`` (GET), ``done`` (POST) or ``invalid``."""
    loc = pick_locale(locale)
    return (
        environment(str(templates), loc)
        .get_template("unsubscribe.html")
        .render(locale=loc, state=state, email=email, action=action)
    )


__all__ = ["RenderedEmail", "render", "render_unsubscribe_page", "shorten", "subject_line"]
