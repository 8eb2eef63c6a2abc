"""CLI commands for the telegram part (reserved; registered by bot.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
