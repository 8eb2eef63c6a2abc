"""The one place `bot/` names the integrations: their webhook routers, their senders, their scheduled jobs.

Static imports, one line per integration: adding a channel is one module in `integrations/` plus its lines
here. Nothing else in `bot/` imports `integrations/` (an import-linter contract in `make lint` keeps it so).
The app (`bot.app`), the workers (`bot.workers`) and the CLI read these tables; `install()` hands the
sender factories to the dispatcher's registry.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from bot.delivery import senders
from bot.service import Service
from integrations import (
    agent_notify,
    carrier_webhooks,
    chatwoot,
    console,
    email_channel,
    email_webhooks,
    logistics,
    rasa_actions,
    telegram_channel,
    telegram_webhooks,
    twilio_channel,
    twilio_content,
    twilio_voice,
    twilio_webhooks,
    viber_channel,
)

# Outbox kind -> the factory of its sender (built on first use by each dispatcher).
SENDER_FACTORIES: dict[str, senders.SenderFactory] = {
    "message:console": console.make_sender,
    "message:sms": twilio_channel.make_sms_sender,
    "message:whatsapp": twilio_channel.make_whatsapp_sender,
    "message:telegram": telegram_channel.make_sender,
    "message:email": email_channel.make_sender,
    "message:viber": viber_channel.make_sender,
    "message:voice": twilio_voice.make_sender,  # calls, and replies spoken in them
    "webhook": logistics.make_sender,  # signed logistics webhooks
    "chatwoot": chatwoot.make_sender,  # escalations mirrored into Chatwoot (optional)
    "agent_notify": agent_notify.make_sender,  # new-escalation alerts
}

# Webhook routers (each module has `router`, and may set `MAX_BODY_BYTES`). Each authenticates its own
# requests: Twilio signature, Telegram secret header, carrier HMAC / AfterShip signature, Rasa and
# Chatwoot tokens; none takes the API key.
ROUTERS: tuple[ModuleType, ...] = (twilio_webhooks, telegram_webhooks, carrier_webhooks, rasa_actions, chatwoot,
                                   email_webhooks, viber_channel, twilio_voice)

# Per-second jobs of the integrations (sync, run in a thread by the workers).
TICK_JOBS: tuple[Callable[[Service], Any], ...] = (
    chatwoot.enqueue_escalations,  # open escalations -> Chatwoot (no-op unless configured)
)

# The aiogram Bot for the `doorstep telegram …` commands.
telegram_bot = telegram_channel.bot_for
# `doorstep whatsapp sync-templates`: Twilio's Content API.
sync_whatsapp_content = twilio_content.sync
# `doorstep viber set-webhook`.
viber_set_webhook = viber_channel.set_webhook


def install() -> None:
    """Register the senders with the dispatcher's registry (idempotent)."""
    senders.register(SENDER_FACTORIES)
