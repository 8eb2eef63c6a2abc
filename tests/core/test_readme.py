"""README is the product's front door: it must list every setting, command and endpoint, and its links must work.

README keeps the quick start and the reference tables; the long sections live in `docs/` and are linked from it.
These checks fail when a setting, a CLI command or an HTTP route is added without documenting it, or when a
link (file or `#anchor`) points nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    anchors, fence = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"^#{1,6} (.+)", line)):
            anchors.add(_slug(m.group(1)))
    return anchors


def test_readme_stays_a_quick_start_and_reference_index() -> None:
    assert len(README.splitlines()) < 400, "long reference belongs in docs/, linked from README's Reference table"
    reference = _section(README, "Reference")
    for doc in DOCS:
        assert f"(docs/{doc.name})" in reference or f"(docs/{doc.name}#" in README, f"docs/{doc.name} is not linked"


def test_every_setting_is_in_the_settings_table() -> None:
    table = _section(README, "Settings")
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    names |= set(re.findall(r"DOORSTEP_[A-Z_]+", "\n".join(
        p.read_text(encoding="utf-8") for folder in ("bot", "intents", "flows", "integrations")
        for p in (ROOT / folder).rglob("*.py")
        if "os.environ" in p.read_text(encoding="utf-8"))))
    names -= {"DOORSTEP_SIGNATURE_HEADER"}  # a constant (the carrier webhook's header name), not a setting
    missing = sorted(name for name in names if f"`{name}`" not in table)
    assert not missing, f"settings not documented in README's Settings table: {missing}"


def _commands(group: typer.main.TyperGroup | object, prefix: str = "") -> list[str]:
    out = []
    for name, command in getattr(group, "commands", {}).items():
        if getattr(command, "hidden", False):
            continue
        full = f"{prefix}{name}"
        sub = _commands(command, f"{full} ")
        out.extend(sub or [full])
    return out


def test_every_cli_command_is_in_the_command_table() -> None:
    from bot.cli.app import app

    table = _section(README, "Command line") + _section(README, "Shop configuration (doorstep.yaml)")
    commands = _commands(typer.main.get_command(app))
    assert "serve" in commands and "events list" in commands
    missing = [c for c in commands if f"`doorstep {c}" not in table]
    assert not missing, f"commands not documented in README: {missing}"


def test_every_http_route_is_documented() -> None:
    from bot.app import create_app

    table = _section(README, "HTTP API")
    everything = README + "".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    app = create_app(Settings(DATABASE_URL="sqlite://", DOORSTEP_API_KEY="k" * 32))
    paths = {getattr(route, "path", "") for route in app.routes}
    undocumented = []
    for path in sorted(paths):
        if path.startswith("/docs/"):
            continue  # Swagger UI's own assets, served with /docs
        if path.startswith(("/inbox", "/docs", "/openapi")):
            if path not in everything:  # the inbox's pages and assets are described in docs/inbox.md
                undocumented.append(path)
        elif not (path in table or re.sub(r"\{\w+\}", "{id}", path) in table):
            undocumented.append(path)
    assert not undocumented, f"routes missing from README's HTTP API table: {undocumented}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_links_resolve_to_files_and_headings(page: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "", page.read_text(encoding="utf-8"))  # code spans are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (anchor and path.suffix == ".md"
                                 and anchor not in _anchors(path.read_text(encoding="utf-8"))):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"
