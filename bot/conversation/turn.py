"""What one inbound message produced: the reading, the replies queued, the flow, escalation, COD answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core.models import Message
from intents import Classification


@dataclass
class Turn:
    """Everything one inbound message produced (for the CLI, tests and metrics)."""

    classification: Classification | None
    replies: list[Message] = field(default_factory=list)
    flow: str | None = None
    escalated: bool = False
    cod_confirmed: list[str] = field(default_factory=list)  # order ids whose COD was confirmed this turn
    channel: str = ""  # the inbound message's channel

