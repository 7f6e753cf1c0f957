"""Translations from gettext catalogs: CLDR plurals, Babel numbers and dates, and checks that
every message of the sources, templates and dashboard is extracted and translated in every
locale (domains ``messages``: subscribers/locale; ``dashboard``: web/locale)."""

from __future__ import annotations

import fnmatch
import functools
import io
import re
import tomllib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from core.status import ReasonCode
from devstack import catalogs
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


@dataclass(frozen=True, slots=True)
class Domain:
    """A gettext domain: its Babel mapping, the folder extracted, and its catalogs."""

    name: str
    mapping: Path
    sources: Path
    locale_dir: Path

    @property
    def template(self) -> Path:
        return self.locale_dir / f"{self.name}.pot"

    def po(self, ident: str) -> Path:
        return self.locale_dir / ident / "LC_MESSAGES" / f"{self.name}.po"


DOMAINS = {
    # digest, push, inbox, unsubscribe page: `pybabel extract -F babel.cfg ... .`
    "messages": Domain("messages", ROOT / "babel.cfg", ROOT, LOCALE_DIR),
    # the web dashboard: `pybabel extract -F web/babel.cfg ... web/src`
    "dashboard": Domain(
        "dashboard", ROOT / "web" / "babel.cfg", ROOT / "web" / "src", ROOT / "web" / "locale"
    ),
}


def extract(mapping: Path, sources: Path) -> set[Key]:
    """The messages ``pybabel extract -F <mapping> <sources>`` finds (default keywords: ``_``,
    ``gettext``, ``ngettext``, ``N_``…)."""
    with mapping.open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: set[Key] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(sources, method_map, options_map):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


@functools.cache
def extracted(domain: str = "messages") -> frozenset[Key]:
    d = DOMAINS[domain]
    return frozenset(extract(d.mapping, d.sources))


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


_BRACES = re.compile(r"\{(\w+)\}")


def brace_mismatches(catalog: Catalog) -> list[Key]:
    """Messages whose translation names a ``{placeholder}`` the source lacks (or, singular
    messages, drops one): the dashboard fills ``{name}``s, which Babel's checks do not know."""
    wrong: list[Key] = []
    for message in catalog:
        if not message.id:
            continue
        ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        source = {name for text in ids for name in _BRACES.findall(text)}
        for form in (f for f in forms if f):
            names = set(_BRACES.findall(form))
            if not names <= source or (len(ids) == 1 and names != source):
                wrong.append(ids if len(ids) > 1 else ids[0])
                break
    return wrong


def _po(ident: str, domain: str = "messages") -> Catalog:
    with DOMAINS[domain].po(ident).open("rb") as handle:
        return read_po(handle, locale=ident, domain=domain)


LOCALE_IDENTS = sorted(i18n.BABEL_LOCALES.values())


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("ident", LOCALE_IDENTS)
def test_every_message_is_translated_in_every_locale(domain: str, ident: str) -> None:
    wanted = extracted(domain)
    assert len(wanted) > 50  # the extraction really ran over the sources and templates
    catalog = _po(ident, domain)
    assert untranslated(catalog, wanted) == [], (
        f"{domain}/{ident}: untranslated (run pybabel update, translate)"
    )
    # placeholders agree (Babel's python-format checks, ours for {name}) and plural forms follow CLDR
    assert [(m.id, errors) for m, errors in catalog.check()] == []
    assert brace_mismatches(catalog) == []
    assert catalog.num_plurals == {"en": 2, "es": 3, "pt_BR": 3}[ident]
    if domain != "messages":
        return
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


def template_gaps(found: Iterable[Key], template: Catalog) -> tuple[list[Key], list[Key]]:
    """(marked in the sources but missing from the ``.pot``, in the ``.pot`` but no longer marked)."""
    ids = {m.id if isinstance(m.id, str) else tuple(m.id) for m in template if m.id}
    found = set(found)
    return sorted(found - ids, key=str), sorted(ids - found, key=str)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_the_template_is_the_current_extraction(domain: str) -> None:
    with DOMAINS[domain].template.open("rb") as handle:
        template = read_po(handle)
    assert template_gaps(extracted(domain), template) == ([], []), (
        f"{DOMAINS[domain].template} is stale: run pybabel extract (README: Translations)"
    )


def test_a_text_marked_in_the_dashboard_but_not_extracted_fails(tmp_path: Path) -> None:
    dashboard = DOMAINS["dashboard"]
    source = (dashboard.sources / "main.js").read_text()
    (tmp_path / "main.js").write_text(
        source + "\nconst extra = (t) => [t._('A new text'), t.ngettext('{count} day', '{count} days', 2)];\n"
    )
    with dashboard.template.open("rb") as handle:
        template = read_po(handle)
    missing, _obsolete = template_gaps(extract(dashboard.mapping, tmp_path), template)
    assert missing == [("{count} day", "{count} days"), "A new text"]


def test_the_browser_catalogs_are_the_compiled_po_files() -> None:
    """web/src/catalogs.js (what the bundle imports) is ``python -m devstack.catalogs``'s
    output from the .po files, plural forms keyed by the CLDR categories Intl.PluralRules answers."""
    compiled = catalogs.compile_all(ROOT)
    assert catalogs.output_path(ROOT).read_bytes() == catalogs.render(compiled), (
        "web/src/catalogs.js is stale: run `.venv/bin/python -m devstack.catalogs`"
    )
    es, pt, en = (compiled["locales"][loc] for loc in ("es", "pt-BR", "en"))
    files = {"es": "{count} archivo", "pt": "{count} arquivo", "en": "{count} file"}
    assert es["messages"]["{count} file"] == {
        "one": files["es"],
        "many": "{count} de archivos",
        "other": "{count} archivos",
    }
    assert pt["messages"]["{count} file"] == {
        "one": files["pt"],
        "many": "{count} de arquivos",
        "other": "{count} arquivos",
    }
    assert en["messages"]["{count} file"] == {"one": files["en"], "other": "{count} files"}
    assert (es["plural_categories"], en["plural_categories"]) == (["one", "many", "other"], ["one", "other"])
    # every extracted message is in every locale's compiled catalog
    wanted = {k if isinstance(k, str) else k[0] for k in extracted("dashboard")}
    for loc in compiled["locales"].values():
        assert set(loc["messages"]) == wanted


def _header(plural_forms: str) -> Catalog:
    po = f'msgid ""\nmsgstr ""\n"Language: es\\n"\n"Plural-Forms: {plural_forms}\\n"\n'
    return read_po(io.BytesIO(po.encode()), locale="es")


def test_plural_forms_that_disagree_with_cldr_do_not_compile() -> None:
    babel_header = "nplurals=3; plural=(n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2);"
    assert catalogs.plural_categories(_header(babel_header)) == {"one": 0, "many": 1, "other": 2}
    with pytest.raises(catalogs.CatalogError, match="does not match CLDR"):
        catalogs.plural_categories(_header("nplurals=3; plural=(n != 1);"))  # form 2 never used
    with pytest.raises(catalogs.CatalogError, match="Plural-Forms gives form"):
        catalogs.plural_categories(_header("nplurals=3; plural=(n == 1 ? 0 : n == 2 ? 1 : 2);"))


def test_the_check_catches_a_missing_translation() -> None:
    catalog = Catalog(locale="es")
    catalog.add("Ready", "Listos")
    catalog.add(("%(num)s file", "%(num)s files"), ("%(num)s archivo", "", "%(num)s archivos"))
    catalog.add("Images", "")
    wanted: list[Key] = ["Ready", ("%(num)s file", "%(num)s files"), "Images", "Documents"]
    assert untranslated(catalog, wanted) == [("%(num)s file", "%(num)s files"), "Images", "Documents"]
    braces = Catalog(locale="es")
    braces.add("Could not delete: {message}", "No se pudo eliminar: {mensaje}")
    braces.add("Reason: {code}", "Motivo")
    braces.add(("{count} file", "{count} files"), ("un archivo", "{count} de archivos", "{count} archivos"))
    braces.add("Ready", "Lista")
    assert brace_mismatches(braces) == ["Could not delete: {message}", "Reason: {code}"]


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
