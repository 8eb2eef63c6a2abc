"""Messaging compliance before any flow runs: STOP/START/HELP keywords, opt-out state.

Called by the engine for every inbound message, even while a human owns the
conversation (opt-out must always work). Returns effects to apply instead of
running a flow, or None to let the flow run.

Rules (the intents classifier recognises whole-message keywords only and
marks them with `source="keyword"` and a `keyword` entity):
  * STOP, STOPALL, UNSUBSCRIBE, END, QUIT, REVOKE, OPTOUT -> opted out of this
    channel, with one confirmation (a second STOP gets no reply);
  * START, UNSTOP, or YES in answer to that confirmation -> opted back in; on Telegram /start too (a user
    who blocked the bot, which the dispatcher records as an opt-out, has to unblock it and press Start);
  * HELP, INFO -> the help text;
  * a bare CANCEL -> ask whether they mean the order or the messages, except on SMS to a US number,
    where CANCEL is an opt-out like STOP (US rules; one confirmation);
  * sentences ("please stop the courier") are left to the flows.
Telegram chats not yet linked to a phone number are asked to share it.

This module never sends anything and never changes an order.
"""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from bot.core import phones, replies
from bot.core.models import Conversation, Customer, Message
from bot.store import consent
from flows.base import Effect, Reply, SetOptOut
from intents import Classification, Intent

CANCEL_WORDS = frozenset({"cancel", "cancelar", "cancel karo"})
# US messaging rules (CTIA): these bare words are opt-outs on SMS, besides the STOP family the classifier
# already marks (STOP, QUIT, END, REVOKE, OPT OUT, UNSUBSCRIBE). Prompts to US numbers therefore never ask
# for CANCEL; they use buttons or numbers.
US_OPT_OUT_WORDS = frozenset({"cancel", "stop", "quit", "end", "revoke", "opt out", "optout", "unsubscribe"})
US_COUNTRIES = frozenset({"US"})
CONTACT_BUTTON = "@contact"  # integrations.telegram_channel turns it into a request_contact keyboard
TELEGRAM_START = "/start"
TELEGRAM_CONTACT = "/contact"  # what the Telegram webhook stores for a shared contact
_PUNCTUATION = re.compile(r"[\s.!?¡¿]+")


def _keyword(classification: Classification) -> str | None:
    if classification.source != "keyword":
        return None
    return next((str(e.value) for e in classification.entities if e.type == "keyword"), None)


def us_sms(channel: str, customer: Customer) -> bool:
    """An SMS conversation with a US number, where US opt-out rules apply."""
    return channel == "sms" and phones.country_of(customer.phone) in US_COUNTRIES


def _bare(text: str) -> str:
    return _PUNCTUATION.sub(" ", text.lower()).strip()


def _last_reply_template(session: Session, customer_id: int | None, before_id: int | None) -> str | None:
    query = select(Message.template).where(Message.customer_id == customer_id, Message.direction == "out",
                                           col(Message.status) != "cancelled")
    if before_id is not None:
        query = query.where(col(Message.id) < before_id)
    return session.exec(query.order_by(col(Message.id).desc()).limit(1)).first()


def pre_flow(*, session: Session, conversation: Conversation, customer: Customer, message: Message,
             classification: Classification) -> list[Effect] | None:
    channel = message.channel or conversation.channel
    opted_out = consent.opted_out(customer, channel)
    keyword = _keyword(classification)
    text = _bare(message.text)

    if keyword == "stop" or (text in US_OPT_OUT_WORDS and us_sms(channel, customer)):
        # One confirmation only: a repeated STOP changes nothing and gets no reply. On a US number a bare
        # CANCEL is an opt-out too (CTIA; carriers enforce it), never "which do you mean?".
        return [] if opted_out else [SetOptOut(True, channel, source="keyword", detail=text[:20].upper()),
                                     Reply("channels.opted_out")]
    if keyword == "start":
        return [SetOptOut(False, channel, source="keyword", detail=text[:20].upper()),
                Reply("channels.opted_in")] if opted_out else None
    if (opted_out and classification.intent == Intent.AFFIRM and len(text) <= 12
            and _last_reply_template(session, customer.id, message.id) == "channels.opted_out"):
        return [SetOptOut(False, channel, source="keyword", detail=text[:20].upper()), Reply("channels.opted_in")]
    if keyword == "help":
        return [Reply("channels.help")]
    if text in CANCEL_WORDS:
        # Carriers treat a bare CANCEL as opt-out; here it usually means the order. Ask.
        return [Reply("channels.cancel_which", buttons=(
            (replies.render("channels.button_cancel_order", customer.locale), "/btn:cancel_order"),
            (replies.render("channels.button_stop_messages", customer.locale), "STOP"),
        ))]
    if channel == "telegram":
        command = message.text.strip().split(" ", 1)[0].lower()
        if command == TELEGRAM_START and opted_out:
            # Back after blocking the bot (or STOP): Telegram only lets a user who unblocked it press Start.
            return [SetOptOut(False, channel, source="telegram.start", detail=TELEGRAM_START),
                    Reply("channels.opted_in")]
        if command in {TELEGRAM_START, TELEGRAM_CONTACT} and customer.phone:
            return [Reply("channels.telegram_linked")]
        if customer.phone is None:
            return [Reply("channels.telegram_share_contact", buttons=(
                (replies.render("channels.button_share_phone", customer.locale), CONTACT_BUTTON),))]
    return None
