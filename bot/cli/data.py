"""The database's upkeep: `migrate` (its schema) and `api-key` (the generated key kept in it).
Registered by bot.cli.app; `erase` (a customer's personal data) is in bot.cli.journeys.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.startup import load_service


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.command("api-key")(api_key)
    app.command()(migrate)


def api_key(rotate: Annotated[bool, typer.Option("--rotate", help="Generate a new key (the old one stops working).")] = False) -> None:
    """Show how the API key is configured, or rotate the generated one."""
    from bot.store.auth import rotate_api_key

    service = load_service()
    if service.settings.api_key.get_secret_value():
        typer.echo("DOORSTEP_API_KEY is set in the environment; change it there.")
        return
    if not rotate:
        typer.echo("The API key was generated at first start and shown once. Use --rotate for a new one.")
        return
    typer.echo(rotate_api_key(service.db))


def migrate() -> None:
    """Apply database migrations (also done automatically at every start)."""
    service = load_service(migrate=False)
    service.db.migrate()
    typer.echo(f"Database is up to date ({service.db.engine.dialect.name}).")
