"""The channel protocol and registry.

A channel is one module in `integrations/` that knows one provider:
  * inbound: its webhook router verifies the request and parses it into
    `InboundMessage`s, then calls `bot.conversation.gateway`;
  * outbound: a `Sender` turns an `OutboundMessage` into a provider call and
    returns a `Receipt`, or raises one of `bot.core.errors.DeliveryError`'s kinds.

The sender registry is `bot.delivery.senders`; `bot.wiring` names each channel's factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    pass

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
    contact_phone: str | None = None  # Telegram: the user's own shared contact, E.164
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


class Closable(Protocol):
    """Optional: a sender that holds connections (an HTTP session) closes them when its dispatcher stops."""

    async def aclose(self) -> None: ...


class Preparable(Protocol):
    """Optional: slow first-use work (imports, building the client) done before a rate-limit slot is taken,
    so a send that starts at its slot is only the request: messages waiting on that work together would
    otherwise reach the provider in one burst."""

    async def prepare(self) -> None: ...


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
