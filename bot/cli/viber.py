"""`doorstep viber set-webhook`: register POST /webhooks/viber with Viber for the events Doorstep reads.

Uses the Viber REST API at VIBER_API_BASE_URL (default Viber's). Never prints the auth token.
"""

from __future__ import annotations

from typing import Annotated

import typer

viber_app = typer.Typer(help="Viber bot: register the webhook.", no_args_is_help=True)


@viber_app.command("set-webhook")
def set_webhook(
    url: Annotated[str | None, typer.Option(help="Webhook URL; default DOORSTEP_PUBLIC_URL + /webhooks/viber.")] = None,
) -> None:
    """Register the webhook (Viber then posts a signed check to it, which `serve` must answer)."""
    import asyncio

    from bot.core.settings import get_settings
    from bot.wiring import viber_set_webhook

    settings = get_settings()
    if not settings.viber.configured:
        typer.echo("VIBER_AUTH_TOKEN and VIBER_BOT_NAME must be set.", err=True)
        raise typer.Exit(2)
    try:
        answer = asyncio.run(viber_set_webhook(settings, url))
    except Exception as exc:
        typer.echo(f"set_webhook failed: {exc.__class__.__name__}: {str(exc)[:200]}", err=True)
        raise typer.Exit(1) from None
    typer.echo("Webhook set; events: " + ", ".join(str(e) for e in answer.get("event_types", [])))


def register(app: typer.Typer) -> None:
    app.add_typer(viber_app, name="viber")
