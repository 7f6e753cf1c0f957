"""The dashboard's plurals in Debian's Chromium (driver: plurals.mjs): web/src/i18n.js and the
catalogs compiled from web/locale/*/LC_MESSAGES/dashboard.po, with the browser's own
Intl.PluralRules choosing each CLDR category."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.browser.conftest import artifacts_dir

HERE = Path(__file__).resolve().parent
COUNTS = [0, 1, 2, 5, 1_000_000]


def test_plurals_render_from_the_compiled_catalogs_in_chromium(chromium: Path) -> None:
    node = shutil.which("node")
    assert node
    args = {
        "timeoutMs": 20_000,
        "screenshot": str(artifacts_dir() / "dashboard-plurals.png"),
        "counts": {"es": COUNTS, "pt-BR": COUNTS, "en": COUNTS},
    }
    result = subprocess.run(
        [node, str(HERE / "plurals.mjs"), json.dumps(args)], capture_output=True, text=True, timeout=90
    )
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    assert result.returncode == 0 and report.get("ok"), result.stdout[-4000:] + result.stderr[-3000:]
    assert report["pageErrors"] == [] and report["console"] == []
    texts = report["texts"]

    es, pt, en = texts["es"], texts["pt-BR"], texts["en"]
    assert es["files"] == ["0 archivos", "1 archivo", "2 archivos", "5 archivos", "1.000.000 de archivos"]
    # CLDR Portuguese: 0 and 1 are "one"
    assert pt["files"] == ["0 arquivo", "1 arquivo", "2 arquivos", "5 arquivos", "1.000.000 de arquivos"]
    assert en["files"] == ["0 files", "1 file", "2 files", "5 files", "1,000,000 files"]
    assert sorted(es["categories"]) == sorted(pt["categories"]) == ["many", "one", "other"]
    assert (es["heading"], pt["heading"], en["heading"]) == (
        "Cargas del proyecto",
        "Envios do projeto",
        "Project uploads",
    )
    assert (es["ready"], pt["ready"], en["ready"]) == ("Lista", "Pronto", "Ready")
