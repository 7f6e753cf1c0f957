from pathlib import Path

from core.settings import describe

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting_and_both_commands() -> None:
    text = README.read_text()
    missing = [variable for variable, _, _ in describe() if f"`{variable}`" not in text]
    assert missing == [], f"README configuration table is missing {missing}; run scripts/config_table.py"
    assert "make run" in text and "make test" in text
