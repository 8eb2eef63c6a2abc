"""The console channel: `doorstep chat` talks to the bot through the full pipeline.

Outbound console messages are "delivered" by being marked sent; the chat
command prints them from the message log. Never imports a provider SDK.
"""

from __future__ import annotations

from bot.core.channels import OutboundMessage, Receipt
from bot.core.settings import Settings


class ConsoleSender:
    async def send(self, message: OutboundMessage) -> Receipt:
        return Receipt(provider_id=f"console-{message.outbox_id}", status="delivered")


def make_sender(settings: Settings) -> ConsoleSender:
    return ConsoleSender()
