"""Messaging compliance before any flow runs: STOP/START/HELP keywords, opt-out state.

Called by the engine for every inbound message, even while a human owns the
conversation (opt-out must always work). Returns effects to apply instead of
running a flow, or None to let the flow run.
"""

from __future__ import annotations

from sqlmodel import Session

from bot.models import Conversation, Customer, Message
from flows.base import Effect
from intents import Classification


def pre_flow(*, session: Session, conversation: Conversation, customer: Customer, message: Message,
             classification: Classification) -> list[Effect] | None:
    return None
