"""The channel protocol and registry.

A channel is one module in `integrations/` that knows one provider:
  * inbound: its webhook router verifies the request and parses it into
    `InboundMessage`s, then calls `bot.conversation.gateway`;
  * outbound: a `Sender` turns an `OutboundMessage` into a provider call and
    returns a `Receipt`, or raises one of `bot.core.errors.DeliveryError`'s kinds.

Senders are created lazily, so `doorstep chat` never imports aiogram/twilio.
Adding a channel = one module + one line in SENDER_FACTORIES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.core.settings import Settings

MAX_TEXT = 4096


@dataclass(frozen=True)
class InboundMessage:
    channel: str  # sms | whatsapp | telegram | console
    text: str
    provider_message_id: str | None = None
    phone: str | None = None  # E.164 when the channel knows it
    telegram_chat_id: str | None = None
    media_urls: tuple[str, ...] = ()
    received_at: datetime | None = None
    profile_name: str = ""
    link_token: str | None = None  # Telegram /start <token> deep link
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    outbox_id: int
    message_id: int | None
    channel: str
    to: str  # E.164 phone, or Telegram chat id
    text: str
    kind: str = "reply"  # template/journey name, for WhatsApp templates
    buttons: tuple[tuple[str, str], ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True)
class Receipt:
    provider_id: str | None
    status: str = "sent"  # sent | queued | delivered
    channel: str | None = None  # set when a fallback channel was used
    detail: str = ""


class Sender(Protocol):
    async def send(self, message: OutboundMessage) -> Receipt: ...


class Reconciler(Protocol):
    """Optional: after a crash mid-send, ask the provider whether the message already went out."""

    async def reconcile(self, message: OutboundMessage) -> Receipt | None: ...


def sanitise_text(text: str | bytes | None) -> str:
    """Strip NUL bytes and undecodable input, cap the length; never raises."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text.replace("\x00", "")[:MAX_TEXT]


# "module:attribute" of a factory `(settings) -> Sender`, imported on first use.
SENDER_FACTORIES: dict[str, str] = {
    "message:console": "integrations.console:make_sender",
    "message:sms": "integrations.twilio_channel:make_sms_sender",
    "message:whatsapp": "integrations.twilio_channel:make_whatsapp_sender",
    "message:telegram": "integrations.telegram_channel:make_sender",
    "webhook": "integrations.logistics:make_sender",
    "chatwoot": "integrations.chatwoot:make_sender",  # escalations mirrored into Chatwoot (optional)
    "agent_notify": "integrations.agent_notify:make_sender",  # new-escalation alerts (bot.store.escalations)
}


def register_sender(key: str, factory_path: str) -> None:
    SENDER_FACTORIES[key] = factory_path


def load_factory(key: str) -> Callable[[Settings], Sender] | None:
    path = SENDER_FACTORIES.get(key)
    if path is None:
        return None
    module_name, _, attribute = path.partition(":")
    factory: Callable[[Settings], Sender] = getattr(importlib.import_module(module_name), attribute)
    return factory
