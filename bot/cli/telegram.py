"""`doorstep telegram …`: register the bot's webhook with Telegram (with the secret token).

Uses the real aiogram Bot, honouring TELEGRAM_API_BASE_URL. Never prints the
bot token or the webhook secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.core.settings import Settings

telegram_app = typer.Typer(help="Telegram bot: register or inspect the webhook.", no_args_is_help=True)


def _settings() -> Settings:
    from bot.core.settings import get_settings

    return get_settings()


@telegram_app.command("set-webhook")
def set_webhook(
    url: Annotated[str | None, typer.Option(help="Webhook URL; default DOORSTEP_PUBLIC_URL + /webhooks/telegram.")] = None,
    drop_pending: Annotated[bool, typer.Option("--drop-pending", help="Discard updates Telegram queued meanwhile.")] = False,
) -> None:
    """Register POST /webhooks/telegram with Telegram, with TELEGRAM_WEBHOOK_SECRET as the secret token."""
    import asyncio

    settings = _settings()
    config = settings.telegram
    if not config.configured:
        typer.echo("TELEGRAM_BOT_TOKEN is not set.", err=True)
        raise typer.Exit(2)
    secret = config.webhook_secret.get_secret_value()
    if not secret:
        typer.echo("TELEGRAM_WEBHOOK_SECRET is not set; Doorstep refuses unauthenticated Telegram webhooks.\n"
                   "Set it to 1-256 characters of A-Z, a-z, 0-9, _ and -.", err=True)
        raise typer.Exit(2)
    target = url or settings.public_url.rstrip("/") + "/webhooks/telegram"
    if not target.startswith("https://"):
        typer.echo(f"Note: Telegram only delivers to https:// URLs (got {target}).", err=True)

    async def run() -> bool:
        from bot.wiring import telegram_bot as bot_for

        bot = bot_for(settings)
        try:
            return bool(await bot.set_webhook(url=target, secret_token=secret, drop_pending_updates=drop_pending,
                                              allowed_updates=["message", "callback_query", "my_chat_member"]))
        finally:
            await bot.session.close()

    try:
        ok = asyncio.run(run())
    except Exception as exc:
        typer.echo(f"setWebhook failed: {exc.__class__.__name__}: {str(exc)[:200]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Webhook set: {target}" if ok else "Telegram answered false to setWebhook.")


@telegram_app.command("webhook-info")
def webhook_info() -> None:
    """Show what Telegram knows about the webhook (URL, pending updates, last error)."""
    import asyncio

    settings = _settings()
    if not settings.telegram.configured:
        typer.echo("TELEGRAM_BOT_TOKEN is not set.", err=True)
        raise typer.Exit(2)

    async def run() -> dict[str, object]:
        from bot.wiring import telegram_bot as bot_for

        bot = bot_for(settings)
        try:
            info = await bot.get_webhook_info()
            return {"url": info.url, "pending_update_count": info.pending_update_count,
                    "last_error_message": info.last_error_message}
        finally:
            await bot.session.close()

    for key, value in asyncio.run(run()).items():
        typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.add_typer(telegram_app, name="telegram")
