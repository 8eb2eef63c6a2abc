"""`doorstep --help` showed `<bool>` after every flag (typer 0.29), as if flags took a value."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

from bot.cli.app import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(command, "commands"):  # a group (typer bundles its own click)
        for name, sub in command.commands.items():
            found.extend(_commands(sub, (*path, name)))
    return found


def test_every_help_page_shows_flags_as_flags() -> None:
    runner = CliRunner()
    paths = _commands(typer.main.get_command(app))
    assert ("serve",) in paths and ("demo",) in paths and ("api-key",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, f"doorstep {' '.join(path)} --help:\n{result.output}"
        assert "--help" in result.output
    serve_help = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "120"}).output
    assert "--demo" in serve_help and "<int>" in serve_help  # options that take a value still say which
