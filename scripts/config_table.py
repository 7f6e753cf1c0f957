"""Print the README's configuration table from core.settings (single source of truth)."""

from core.settings import describe

print("| Variable | Default | Meaning |")
print("|---|---|---|")
for variable, default, doc in describe():
    shown = f"`{default}`" if default else "—"
    if len(shown) > 60:
        shown = "see `core/settings.py`"
    print(f"| `{variable}` | {shown} | {doc} |")
