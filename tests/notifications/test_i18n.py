"""Translations from gettext catalogs: CLDR plurals, Babel numbers and dates, and a check
that every message of the sources and templates is translated in every locale."""

from __future__ import annotations

import fnmatch
import io
import tomllib
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from core.status import ReasonCode
from subscribers import i18n
from subscribers.digest.query import DigestData, ProjectDay, Recipient
from subscribers.digest.render import render

ROOT = Path(__file__).resolve().parents[2]
LOCALE_DIR = ROOT / "subscribers" / "locale"
DAY = date(2026, 3, 9)
Key = str | tuple[str, ...]


def _subject(locale: str, files: list[int]) -> str:
    who = Recipient(
        uuid.uuid4(), uuid.uuid4(), "a@example.com", "investor", "America/Mexico_City", locale, "T"
    )
    projects = [ProjectDay(uuid.uuid4(), f"Obra {i}", image=n, ready=n) for i, n in enumerate(files)]
    out = render(
        DigestData(who, DAY, projects), thumbnail_urls={}, unsubscribe_url="u", public_url="https://x"
    )
    return out.subject


@pytest.mark.parametrize(
    ("locale", "one", "two", "mixed"),
    [
        ("es", "1 archivo en 1 proyecto", "2 archivos en 2 proyectos", "3 archivos en 1 proyecto"),
        ("pt-BR", "1 arquivo em 1 projeto", "2 arquivos em 2 projetos", "3 arquivos em 1 projeto"),
        ("en", "1 file in 1 project", "2 files in 2 projects", "3 files in 1 project"),
    ],
)
def test_cldr_plurals_in_the_subject(locale: str, one: str, two: str, mixed: str) -> None:
    assert _subject(locale, [1]).endswith(": " + one)
    assert _subject(locale, [1, 1]).endswith(": " + two)
    assert _subject(locale, [3]).endswith(": " + mixed)


def test_numbers_and_dates_per_locale() -> None:
    es, pt, en = (i18n.translator(loc) for loc in ("es", "pt-BR", "en"))
    assert es.ngettext("%(num)s file", "%(num)s files", 12345) == "12.345 archivos"
    assert pt.ngettext("%(num)s file", "%(num)s files", 12345) == "12.345 arquivos"
    assert en.ngettext("%(num)s file", "%(num)s files", 12345) == "12,345 files"
    assert es.ngettext("%(num)s file", "%(num)s files", 1_000_000) == "1.000.000 de archivos"  # CLDR "many"
    assert es.long_date(DAY) == "lunes, 9 de marzo de 2026"
    assert pt.long_date(DAY) == "segunda-feira, 9 de março de 2026"
    assert en.long_date(DAY) == "Monday, March 9, 2026"
    assert (es.short_date(DAY), pt.short_date(DAY), en.short_date(DAY)) == ("9 mar", "9 de mar.", "Mar 9")


def test_every_failure_reason_has_its_own_words() -> None:
    unknown = i18n.reason_text(None, "en")
    for code in ReasonCode:
        assert i18n.reason_text(code, "en") != unknown, code
        assert i18n.reason_text(code, "es") != i18n.reason_text(code, "en"), code


def extracted() -> set[Key]:
    """The messages ``pybabel extract -F babel.cfg -k N_`` finds in sources and templates."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: set[Key] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(ROOT, method_map, options_map):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def untranslated(catalog: Catalog, wanted: Iterable[Key]) -> list[Key]:
    """Messages of ``wanted`` the catalog lacks, leaves empty (any plural form) or fuzzy."""
    missing = []
    for key in wanted:
        message = catalog.get(key if isinstance(key, str) else key[0])
        strings = (
            ()
            if message is None
            else (message.string if isinstance(message.string, tuple) else (message.string,))
        )
        if message is None or message.fuzzy or not strings or not all(strings):
            missing.append(key)
    return missing


def _po(ident: str) -> Catalog:
    with (LOCALE_DIR / ident / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=ident)


@pytest.mark.parametrize("ident", sorted(i18n.BABEL_LOCALES.values()))
def test_every_message_is_translated_in_every_locale(ident: str) -> None:
    wanted = extracted()
    assert len(wanted) > 50  # the extraction really ran over the sources and templates
    catalog = _po(ident)
    assert untranslated(catalog, wanted) == [], f"{ident}: untranslated (run pybabel update, translate)"
    # placeholders agree (Babel's python-format checks) and plural forms follow CLDR
    assert [(m.id, errors) for m, errors in catalog.check()] == []
    assert catalog.num_plurals == {"en": 2, "es": 3, "pt_BR": 3}[ident]
    # the committed .mo is the compiled .po
    with (LOCALE_DIR / ident / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        compiled = read_mo(handle)
    fresh = io.BytesIO()
    write_mo(fresh, catalog)
    fresh.seek(0)
    rebuilt = read_mo(fresh)
    assert _strings(compiled) == _strings(rebuilt), (
        f"{ident}: messages.mo is stale: run `pybabel compile -d subscribers/locale`"
    )


def _strings(catalog: Catalog) -> dict[Key, Key]:
    def key(value: str | Iterable[str] | None) -> Key:
        return value if isinstance(value, str) else tuple(value or ())

    return {key(m.id): key(m.string) for m in catalog if m.id}


def test_the_check_catches_a_missing_translation() -> None:
    catalog = Catalog(locale="es")
    catalog.add("Ready", "Listos")
    catalog.add(("%(num)s file", "%(num)s files"), ("%(num)s archivo", "", "%(num)s archivos"))
    catalog.add("Images", "")
    wanted: list[Key] = ["Ready", ("%(num)s file", "%(num)s files"), "Images", "Documents"]
    assert untranslated(catalog, wanted) == [("%(num)s file", "%(num)s files"), "Images", "Documents"]


def test_the_wheel_ships_the_catalogs_and_templates() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["subscribers"]
    files = [p.relative_to(ROOT / "subscribers").as_posix() for p in LOCALE_DIR.rglob("*.[mp]o")]
    assert len(files) == 6
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files)
    # templates/email/ lands in site-packages/templates/email, where render.py looks
    assert "templates*" in setuptools["packages"]["find"]["include"]
    everywhere = setuptools["package-data"]["*"]
    assert all(
        any(fnmatch.fnmatch(t.name, pattern) for pattern in everywhere)
        for t in (ROOT / "templates" / "email").iterdir()
    )
