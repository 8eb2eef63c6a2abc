"""Telegram sender: the real aiogram `Bot`, pointed at `TELEGRAM_API_BASE_URL` when set.

aiogram's HTTP session belongs to the event loop that created it, so one
`Bot` is kept per running loop. Buttons become an inline keyboard (the
callback data is the button's value, e.g. `/btn:cod_confirm`), except a value
of `@contact`, which becomes a one-time reply keyboard asking the customer to
share their phone number (`request_contact`).

Errors map to bot.core.errors: `TelegramRetryAfter.retry_after` -> RetryAfter,
403 (bot blocked) -> RecipientOptedOut, other 4xx -> PermanentProviderError,
5xx / network / timeout -> RetryAfter. Never logs tokens or message text.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from typing import Any

from bot.core.channels import OutboundMessage, Receipt
from bot.core.errors import ChannelNotConfigured, PermanentProviderError, RecipientOptedOut, RetryAfter
from bot.core.settings import Settings

REQUEST_TIMEOUT_SECONDS = 10.0
CONTACT_BUTTON = "@contact"

_bots: dict[tuple[int, str, str], Any] = {}
# aiogram builds hundreds of pydantic models at import (seconds on a small machine): import it in a
# thread, never on the event loop that also serves webhooks.
AIOGRAM_MODULES = ("aiogram", "aiogram.types", "aiogram.exceptions", "aiogram.client.session.aiohttp",
                   "aiogram.dispatcher.event.bases")


def _import_aiogram() -> None:
    for name in AIOGRAM_MODULES:
        importlib.import_module(name)


async def ensure_aiogram() -> None:
    if not all(name in sys.modules for name in AIOGRAM_MODULES):
        await asyncio.to_thread(_import_aiogram)


def preload_in_background() -> None:
    """Start importing aiogram now, off the event loop (called when Telegram is configured)."""
    if "aiogram.types" not in sys.modules:
        threading.Thread(target=_import_aiogram, name="aiogram-preload", daemon=True).start()


def bot_for(settings: Settings) -> Any:
    """The aiogram Bot for this settings' token and API base, on the running event loop."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import PRODUCTION, TelegramAPIServer

    token = settings.telegram.bot_token.get_secret_value()
    if not token:
        raise ChannelNotConfigured("Telegram is not configured (TELEGRAM_BOT_TOKEN)")
    base = settings.telegram.api_base_url
    key = (id(asyncio.get_running_loop()), token, base)
    bot = _bots.get(key)
    if bot is None:
        api = TelegramAPIServer.from_base(base) if base else PRODUCTION
        bot = Bot(token, session=AiohttpSession(api=api, timeout=REQUEST_TIMEOUT_SECONDS))
        # Forget bots of loops that are gone (tests and `doorstep chat` run several loops).
        for stale in [k for k in _bots if k[0] != key[0]]:
            _bots.pop(stale, None)
        _bots[key] = bot
    return bot


async def close_bots() -> None:
    """Close the HTTP sessions of the bots made on the running event loop (at dispatcher shutdown)."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _bots if k[0] == loop_id]:
        bot = _bots.pop(key)
        await bot.session.close()


def reply_markup(buttons: tuple[tuple[str, str], ...]) -> Any:
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup

    if not buttons:
        return None
    if any(value == CONTACT_BUTTON for _, value in buttons):
        rows = [[KeyboardButton(text=label, request_contact=value == CONTACT_BUTTON)] for label, value in buttons]
        return ReplyKeyboardMarkup(keyboard=rows, one_time_keyboard=True, resize_keyboard=True)
    # callback_data is capped at 64 bytes by Telegram.
    rows_inline = [[InlineKeyboardButton(text=label[:64], callback_data=value.encode()[:64].decode(errors="ignore"))]
                   for label, value in buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows_inline)


def map_telegram_error(exc: Exception) -> Exception:
    from aiogram.exceptions import (
        TelegramBadRequest,
        TelegramForbiddenError,
        TelegramNetworkError,
        TelegramNotFound,
        TelegramRetryAfter,
        TelegramServerError,
        TelegramUnauthorizedError,
    )

    if isinstance(exc, TelegramRetryAfter):
        return RetryAfter(float(exc.retry_after), "Telegram flood control", code="429")
    if isinstance(exc, TelegramForbiddenError):
        return RecipientOptedOut("Telegram 403: the bot was blocked or cannot write to this chat", code="403")
    if isinstance(exc, TelegramUnauthorizedError):
        return PermanentProviderError("Telegram 401: invalid TELEGRAM_BOT_TOKEN", code="401")
    if isinstance(exc, TelegramBadRequest | TelegramNotFound):
        return PermanentProviderError("Telegram 400: request refused (unknown chat?)", code="400")
    if isinstance(exc, TelegramServerError):
        return RetryAfter(None, "Telegram 5xx", code="5xx")
    if isinstance(exc, TelegramNetworkError | asyncio.TimeoutError | TimeoutError):
        return RetryAfter(None, "Telegram unreachable or timed out", code="timeout")
    return exc


class TelegramSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: OutboundMessage) -> Receipt:
        if not message.to:
            raise PermanentProviderError("the customer has no linked Telegram chat", code="no-recipient")
        try:
            chat_id = int(message.to)
        except ValueError:
            raise PermanentProviderError("invalid Telegram chat id", code="no-recipient") from None
        await ensure_aiogram()
        bot = bot_for(self.settings)
        try:
            sent = await bot.send_message(chat_id=chat_id, text=message.text or " ",
                                          reply_markup=reply_markup(message.buttons))
        except Exception as exc:
            raise map_telegram_error(exc) from None
        return Receipt(provider_id=f"{sent.chat.id}:{sent.message_id}", status="sent")

    async def prepare(self) -> None:
        """Import aiogram and build the bot before a rate-limit slot is taken (bot.core.channels.Preparable)."""
        await ensure_aiogram()
        bot_for(self.settings)

    async def aclose(self) -> None:
        await close_bots()


def make_sender(settings: Settings) -> TelegramSender:
    if settings.telegram.configured:
        preload_in_background()
    return TelegramSender(settings)
