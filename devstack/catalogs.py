"""The dashboard's gettext catalogs compiled for the browser: ``web/src/catalogs.js``.

The dashboard (``web/src``) marks its texts with ``_()``, ``ngettext()`` and ``N_()``;
``pybabel extract -F web/babel.cfg`` collects them into ``web/locale/dashboard.pot`` and
``pybabel update`` into ``web/locale/<ll>/LC_MESSAGES/dashboard.po`` (es, pt_BR, en; README:
Translations). This module turns those ``.po`` files into the JSON the bundle imports, as
an ES module (``export default {...}``: Node and esbuild import it without JSON import
attributes, and it can say that it is generated)::

    .venv/bin/python -m devstack.catalogs          # write web/src/catalogs.js
    .venv/bin/python -m devstack.catalogs --check  # exit 1 when it is stale

The browser picks a plural with ``Intl.PluralRules(locale).select(n)``, which answers a CLDR
category (``one``, ``many``, ``other``…), so each plural message is written keyed by category.
Which ``msgstr[i]`` serves which category is found here by evaluating the catalog's
``Plural-Forms`` and Babel's CLDR rule of the locale on the same numbers; they must agree (one
index per category, every index used), or compiling fails. Untranslated and fuzzy messages are
left out (the page then shows the English source; a test fails on them first).

The output is committed (like the ``.mo`` files of ``subscribers/locale``), so a fresh clone
builds the dashboard with Node alone; ``tests/notifications/test_i18n.py`` fails when it is
stale. Development only: nothing in production imports this module.
"""

from __future__ import annotations

import argparse
import gettext
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from core.settings import LOCALES

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "dashboard"
CLDR_ORDER = ("zero", "one", "two", "few", "many", "other")
# Numbers tried when matching Plural-Forms indices to CLDR categories (integers: the page only
# counts things). 10**6 and its multiples are Spanish and Portuguese "many".
SAMPLES: tuple[int, ...] = (
    *range(0, 1100),
    *(10**k for k in range(4, 10)),
    *(m * 10**6 for m in (2, 3, 10, 100)),
    1_000_001,
    2_000_000_001,
)


class CatalogError(ValueError):
    """A catalog cannot be compiled (its Plural-Forms disagree with CLDR)."""


def locale_dir(root: Path = ROOT) -> Path:
    return root / "web" / "locale"


def output_path(root: Path = ROOT) -> Path:
    return root / "web" / "src" / "catalogs.js"


def babel_ident(locale: str) -> str:
    """``pt-BR`` → ``pt_BR`` (the catalog folder's name)."""
    return str(Locale.parse(locale, sep="-"))


def po_path(locale: str, root: Path = ROOT) -> Path:
    return locale_dir(root) / babel_ident(locale) / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(locale: str, root: Path = ROOT) -> Catalog:
    with po_path(locale, root).open("rb") as handle:
        return read_po(handle, locale=babel_ident(locale), domain=DOMAIN)


def plural_categories(catalog: Catalog, samples: Iterable[int] = SAMPLES) -> dict[str, int]:
    """CLDR category → ``msgstr`` index, from the catalog's ``Plural-Forms`` and Babel's rule."""
    if catalog.locale is None:
        raise CatalogError("the catalog has no Language")
    rule = catalog.locale.plural_form
    index_of: Callable[[int], int] = gettext.c2py(catalog.plural_expr)
    found: dict[str, int] = {}
    for n in samples:
        category, index = rule(n), index_of(n)
        if found.setdefault(category, index) != index:
            raise CatalogError(
                f"{catalog.locale}: Plural-Forms gives form {index} for {n} but form "
                f"{found[category]} for other {category!r} numbers (CLDR)"
            )
    wanted = set(rule.tags) | {"other"}
    if set(found) != wanted or sorted(set(found.values())) != list(range(catalog.num_plurals)):
        raise CatalogError(
            f"{catalog.locale}: Plural-Forms ({catalog.num_plurals} forms) does not match CLDR "
            f"categories {sorted(wanted)}: {found}"
        )
    return dict(sorted(found.items(), key=lambda item: CLDR_ORDER.index(item[0])))


def compile_catalog(catalog: Catalog) -> dict[str, Any]:
    """``{"plural_categories": [...], "messages": {msgid: text | {category: text}}}``."""
    categories = plural_categories(catalog)
    messages: dict[str, Any] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, str):
            if isinstance(message.string, str) and message.string:
                messages[message.id] = message.string
            continue
        forms = tuple(message.string or ())
        if len(forms) == catalog.num_plurals and all(forms):
            messages[message.id[0]] = {category: forms[i] for category, i in categories.items()}
    return {"plural_categories": list(categories), "messages": dict(sorted(messages.items()))}


def compile_all(root: Path = ROOT, locales: Iterable[str] = LOCALES) -> dict[str, Any]:
    return {"locales": {locale: compile_catalog(read_catalog(locale, root)) for locale in locales}}


HEADER = (
    b"// Generated by `python -m devstack.catalogs` from web/locale/*/LC_MESSAGES/dashboard.po:\n"
    b"// do not edit (README: Translations).\n"
)


def render(compiled: Mapping[str, Any]) -> bytes:
    return HEADER + b"export default " + orjson.dumps(compiled, option=orjson.OPT_INDENT_2) + b";\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.catalogs", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when web/src/catalogs.js is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder")
    args = parser.parse_args(argv)
    fresh = render(compile_all(args.root))
    target = output_path(args.root)
    if args.check:
        current = target.read_bytes() if target.is_file() else b""
        if current != fresh:
            print(f"{target} is stale: run `python -m devstack.catalogs`", file=sys.stderr)
            return 1
        return 0
    target.write_bytes(fresh)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
