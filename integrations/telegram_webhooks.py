"""Telegram webhook: POST /webhooks/telegram, parsed with aiogram 3's Dispatcher and types.

Flow: compare `X-Telegram-Bot-Api-Secret-Token` in constant time (mismatch
-> 403, nothing stored); validate the body as an aiogram `Update`; route it
through an aiogram `Router` whose handlers only *parse* (they return a
`TelegramInbound`, never a Bot API method, so nothing is sent from here);
acknowledge the message (`service.acknowledge`: one INSERT … ON CONFLICT DO
NOTHING on `upd:<update_id>`, group-committed), with what processing needs:
the chat, the deep-link token (`/start <token>`, matched later on
`Customer.telegram_link_token`) or the user's own contact (normalised to
E.164, matched on the phone number); answer 200 once it is committed; then,
in a background task, link the chat (bot/store/linking.py), identify the
customer and run the conversation. A duplicate changes nothing.

A `my_chat_member` update saying the user blocked the bot (`kicked`) is an
opt-out of Telegram, recorded in the consent ledger at once (the next send
would find out by a 403 anyway). Only private chats are handled. A contact card of somebody else never links
anything, and a deep-link token never moves a customer who is already linked
to another chat. Never logs tokens, phone numbers or message text.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import select

from bot.conversation.compliance import TELEGRAM_CONTACT, TELEGRAM_START
from bot.core import jsonbody
from bot.core.channels import InboundMessage, sanitise_text
from bot.core.models import Customer
from bot.core.phones import InvalidPhone, to_e164
from bot.service import Service
from bot.store import consent
from bot.web.deps import ServiceDep
from integrations.twilio_webhooks import process_in_background

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

if os.environ.get("TELEGRAM_BOT_TOKEN"):
    from integrations.telegram_channel import preload_in_background

    preload_in_background()  # so the first update does not wait for aiogram's import

MAX_BODY_BYTES = 256 * 1024
SECRET_HEADER = "x-telegram-bot-api-secret-token"


@dataclass(frozen=True)
class TelegramInbound:
    """What one update means for Doorstep (the handlers' return value)."""

    chat_id: str
    text: str
    link_token: str | None = None
    contact_phone: str | None = None
    callback_query_id: str | None = None
    media: tuple[str, ...] = ()
    profile_name: str = ""


@dataclass(frozen=True)
class TelegramBlocked:
    """The user blocked the bot (a `my_chat_member` update whose new status is `kicked`): an opt-out."""

    chat_id: str


def _build_dispatcher() -> Any:
    from aiogram import Dispatcher, F, Router
    from aiogram.types import CallbackQuery, ChatMemberUpdated
    from aiogram.types import Message as TgMessage

    parse = Router(name="doorstep-parse")

    @parse.message(F.chat.type == "private", F.contact)
    async def shared_contact(message: TgMessage) -> TelegramInbound:
        contact = message.contact
        own = contact is not None and message.from_user is not None and contact.user_id == message.from_user.id
        return TelegramInbound(chat_id=str(message.chat.id), text=TELEGRAM_CONTACT,
                               contact_phone=contact.phone_number if own and contact else None,
                               profile_name=message.from_user.full_name if message.from_user else "")

    @parse.message(F.chat.type == "private")
    async def text_or_media(message: TgMessage) -> TelegramInbound:
        text = message.text or message.caption or ""
        token = None
        if text.startswith(TELEGRAM_START):
            parts = text.split(maxsplit=1)
            if parts[0] == TELEGRAM_START or parts[0].startswith(TELEGRAM_START + "@"):
                token = parts[1].strip()[:64] if len(parts) > 1 else None
                text = TELEGRAM_START  # the token is a credential: never stored in the transcript
        media: list[str] = []
        if message.photo:
            media.append(f"telegram-file:{message.photo[-1].file_id}")
        if message.document:
            media.append(f"telegram-file:{message.document.file_id}")
        return TelegramInbound(chat_id=str(message.chat.id), text=text, link_token=token, media=tuple(media),
                               profile_name=message.from_user.full_name if message.from_user else "")

    @parse.callback_query(F.data, F.message.chat.type == "private")
    async def button(query: CallbackQuery) -> TelegramInbound:
        chat_id = query.message.chat.id if query.message else query.from_user.id
        return TelegramInbound(chat_id=str(chat_id), text=query.data or "", callback_query_id=query.id,
                               profile_name=query.from_user.full_name)

    @parse.my_chat_member(F.chat.type == "private", F.new_chat_member.status == "kicked")
    async def blocked(update: ChatMemberUpdated) -> TelegramBlocked:
        return TelegramBlocked(chat_id=str(update.chat.id))

    dp = Dispatcher()
    dp.include_router(parse)
    return dp


_dispatcher: Any = None


def aiogram_dispatcher() -> Any:
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = _build_dispatcher()
    return _dispatcher


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason})


def own_contact(raw: str | None, default_region: str) -> str | None:
    """The user's own shared contact as E.164 (Telegram sends digits, with or without '+'); None if unusable."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        return to_e164(raw if raw.startswith("+") else "+" + raw, default_region)
    except InvalidPhone:
        return None


async def answer_callback(service: Service, callback_query_id: str) -> None:
    """Stop the button's spinner; best effort (the reply itself goes through the outbox)."""
    from integrations.telegram_channel import bot_for

    try:
        await bot_for(service.settings).answer_callback_query(callback_query_id)
    except Exception as exc:
        log.info("answerCallbackQuery failed: %s", exc.__class__.__name__)


def record_blocked(service: Service, chat_id: str) -> bool:
    """The customer of this chat blocked the bot: opted out of Telegram, in the consent ledger (a repeat, or an
    unknown chat, changes nothing). Pressing Start again opts back in (bot.conversation.compliance)."""
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.telegram_chat_id == chat_id)).first()
        if customer is None:
            return False
        consent.set_consent(session, customer, "telegram", opted_out=True, source="telegram.blocked",
                            detail="my_chat_member: kicked")
        return True


@router.post("/webhooks/telegram", summary="Telegram Bot API update (secret token header)")
async def telegram_update(request: Request, service: ServiceDep, background: BackgroundTasks) -> Response:
    with service.db.ack_priority.acknowledging():  # processing in this process yields meanwhile
        return await _telegram_update(request, service, background)


async def _telegram_update(request: Request, service: Service, background: BackgroundTasks) -> Response:
    config = service.settings.telegram
    expected = config.webhook_secret.get_secret_value()
    if not config.configured or not expected:
        return _problem(403, "Telegram webhook is not configured (TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET)")
    presented = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode()):
        log.warning("telegram webhook refused: bad secret token")
        return _problem(403, "invalid X-Telegram-Bot-Api-Secret-Token")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return _problem(413, "request body too large")
    from integrations.telegram_channel import bot_for, ensure_aiogram

    await ensure_aiogram()
    try:
        data = jsonbody.loads(raw)
    except ValueError:
        return _problem(400, "body is not JSON (expected a Telegram Update)")
    if not isinstance(data, dict):
        return _problem(400, "body is not a Telegram Update object")
    from aiogram.dispatcher.event.bases import UNHANDLED
    from aiogram.types import Update
    from pydantic import ValidationError

    bot = bot_for(service.settings)
    try:
        update = Update.model_validate(data, context={"bot": bot})
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
        return _problem(400, "not a valid Telegram Update: " + ", ".join(fields))
    parsed = await aiogram_dispatcher().feed_update(bot, update)
    if isinstance(parsed, TelegramBlocked):
        known = await asyncio.to_thread(record_blocked, service, parsed.chat_id)
        return JSONResponse({"ok": True, "handled": known})
    if parsed is UNHANDLED or not isinstance(parsed, TelegramInbound):
        return JSONResponse({"ok": True, "handled": False})
    inbound = InboundMessage(
        channel="telegram", text=sanitise_text(parsed.text), provider_message_id=f"upd:{update.update_id}",
        telegram_chat_id=parsed.chat_id, media_urls=parsed.media, received_at=service.now(),
        profile_name=sanitise_text(parsed.profile_name)[:200], link_token=parsed.link_token,
        contact_phone=own_contact(parsed.contact_phone, service.settings.default_country),
    )
    received = await service.acknowledge(inbound)
    if parsed.callback_query_id:
        background.add_task(answer_callback, service, parsed.callback_query_id)
    if received.message_id is not None:
        background.add_task(process_in_background, service, received.message_id)
    return JSONResponse({"ok": True, "handled": True, "duplicate": received.duplicate})

