"""Locales of notifications (es default, pt-BR, en) and their texts, from gettext catalogs.

Every user-facing text of the digest, push, inbox and unsubscribe page is a message in
``subscribers/locale/<ll>/LC_MESSAGES/messages.po`` (Babel: ``pybabel extract`` from the
Python sources and Jinja2 templates, see ``babel.cfg``), compiled to ``messages.mo`` next
to it. Plurals follow each locale's CLDR rule (the catalog's ``Plural-Forms``); numbers and
dates are formatted by Babel for the locale. English is a catalog too (msgid = source).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from core.settings import LOCALES
from core.status import ReasonCode

DEFAULT_LOCALE = "es"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
#: Our locale names → Babel/gettext locale identifiers (catalog folder names).
BABEL_LOCALES = {"es": "es", "pt-BR": "pt_BR", "en": "en"}

_ALIASES = {"es": "es", "pt": "pt-BR", "pt-br": "pt-BR", "en": "en"}


def N_(message: str) -> str:
    return message


def normalize_locale(value: str | None) -> str | None:
    """``pt_BR``, ``pt-br``, ``en-US``, ``es-MX`` → a supported locale, or None when unknown."""
    if not value:
        return None
    raw = value.strip().replace("_", "-")
    if raw in LOCALES:
        return raw
    lowered = raw.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    return _ALIASES.get(lowered.split("-", 1)[0])


def pick_locale(*candidates: str | None) -> str:
    """The first supported locale among ``candidates`` (device > user > tenant), else Spanish."""
    for candidate in candidates:
        found = normalize_locale(candidate)
        if found:
            return found
    return DEFAULT_LOCALE


class MissingCatalog(RuntimeError):
    """A compiled catalog is missing: run ``pybabel compile -d subscribers/locale``."""


@lru_cache(maxsize=8)
def catalog(locale: str, folder: str = str(LOCALE_DIR)) -> NullTranslations:
    """The compiled catalog of ``locale`` (one of ``LOCALES``)."""
    ident = BABEL_LOCALES[pick_locale(locale)]
    path = Path(folder) / ident / "LC_MESSAGES" / f"{DOMAIN}.mo"
    if not path.is_file():
        raise MissingCatalog(f"{path} not found: run `pybabel compile -d {folder} -D {DOMAIN}`")
    with path.open("rb") as handle:
        return Translations(handle, domain=DOMAIN)


@dataclass(frozen=True, slots=True)
class Translator:
    """Texts, plurals, numbers and dates in one locale."""

    locale: str
    translations: NullTranslations

    @property
    def babel_locale(self) -> str:
        return BABEL_LOCALES[self.locale]

    def gettext(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    _ = gettext

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        """``%(num)s`` is ``n`` written the locale's way; other ``values`` fill the rest."""
        text = self.translations.ngettext(singular, plural, n)
        return text % {"num": self.number(n), **values}

    def number(self, n: int | float) -> str:
        return format_decimal(n, locale=self.babel_locale)

    def long_date(self, day: date) -> str:
        """``lunes, 9 de marzo de 2026`` / ``segunda-feira, 9 de março de 2026`` /
        ``Monday, March 9, 2026``."""
        return format_date(day, "full", locale=self.babel_locale)

    def short_date(self, day: date) -> str:
        """``9 mar`` / ``9 de mar.`` / ``Mar 9``."""
        return format_skeleton("MMMd", day, locale=self.babel_locale)


def translator(locale: str | None) -> Translator:
    loc = pick_locale(locale)
    return Translator(loc, catalog(loc))


# Why an upload failed, in words (the reason codes of core.status).
_REASONS: dict[str, str] = {
    ReasonCode.ABORTED: N_("the upload was cancelled"),
    ReasonCode.EXPIRED: N_("the upload was left incomplete and expired"),
    ReasonCode.INFECTED: N_("malware was detected"),
    ReasonCode.TYPE_MISMATCH: N_("the content does not match the declared type"),
    ReasonCode.TYPE_NOT_ALLOWED: N_("file type not allowed"),
    ReasonCode.TOO_LARGE: N_("the file is too large"),
    ReasonCode.CORRUPT: N_("the file is corrupt"),
    ReasonCode.DECOMPRESSION_BOMB: N_("the image is too large to process"),
    ReasonCode.ENCRYPTED: N_("the document is encrypted"),
    ReasonCode.PROCESSING_FAILED: N_("processing failed"),
    ReasonCode.PROCESSING_TIMEOUT: N_("processing took too long"),
    ReasonCode.SIZE_MISMATCH: N_("the stored file is not the size that was announced"),
    ReasonCode.CHECKSUM_MISMATCH: N_("the stored file is not the one that was announced"),
    ReasonCode.SCAN_LIMIT_EXCEEDED: N_("the file is too complex to scan for malware"),
    ReasonCode.TOO_COMPLEX: N_("the file is too complex to process"),
    "": N_("unknown error"),
}


# Why digests to an address stopped (email_suppressions.reason), for the preferences.
SUPPRESSION_TEXTS: dict[str, str] = {
    "bounce": N_("Digests to %(email)s are stopped: messages to this address bounced."),
    "complaint": N_("Digests to %(email)s are stopped: a digest was reported as spam from this address."),
}


def reason_text(reason_code: str | None, locale: str) -> str:
    message = _REASONS.get(reason_code or "", _REASONS[""])
    return translator(locale).gettext(message)
