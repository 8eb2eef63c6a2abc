"""The words the rooms share: who owns a conversation, and the journeys' tables of what supersedes what.

One home for each: the engine, the hold rules, the journeys and the inbox read these instead of
writing their own string sets.
"""

from __future__ import annotations

from enum import StrEnum


class Owner(StrEnum):
    """Who answers a conversation now (`Conversation.owner`)."""

    BOT = "bot"
    WAITING_HUMAN = "waiting_human"  # escalated, no agent has answered yet
    HUMAN = "human"
    RESOLVED = "resolved"


# What an inbox login may do: a viewer reads (phones masked); an agent works escalations (full phone,
# calls, order actions); a supervisor also manages the shop's quick replies.
AGENT_ROLES = ("viewer", "agent", "supervisor")

# While a person owns the conversation, the bot neither answers nor sends automatic messages.
HUMAN_OWNERS: frozenset[str] = frozenset({Owner.WAITING_HUMAN, Owner.HUMAN})

MARKETING_JOURNEYS = ("feedback", "reorder")
REMINDER_JOURNEYS = ("cod_reminder",)  # optional too: the question itself went out already
# Status updates a conversation about the order makes obsolete: the bot has just told the customer.
INFORMATIONAL_JOURNEYS = ("order_confirmed", "shipped", "out_for_delivery", "delayed", "delivered")
TRANSIT_JOURNEYS = ("shipped", "out_for_delivery", "delayed", "failed_attempt")
# A new event of the key's type cancels the still-pending messages of these journeys.
SUPERSEDES: dict[str, tuple[str, ...]] = {
    "shipped": ("shipped",),
    "out_for_delivery": ("shipped", "out_for_delivery", "delayed", "failed_attempt"),
    "delayed": ("shipped", "delayed"),
    "failed_attempt": ("out_for_delivery", "failed_attempt"),
    "delivered": (*TRANSIT_JOURNEYS, "cod_reminder"),
    "returned": (*TRANSIT_JOURNEYS, "cod_reminder", "delivered", "feedback", "reorder"),
    "cancelled": ("order_confirmed", *TRANSIT_JOURNEYS, "cod_reminder", "delivered", "feedback", "reorder"),
}
# Timers a new event makes pointless.
TIMERS_SUPERSEDED: dict[str, tuple[str, ...]] = {
    "delivered": ("cod_reminder", "cod_escalation"),
    "returned": ("cod_reminder", "cod_escalation", "feedback"),
    "cancelled": ("cod_reminder", "cod_escalation", "feedback"),
}


def template_key(journey: str, *, cod: bool = False) -> str:
    """The reply template of a journey's message (the COD order confirmation asks its question)."""
    if journey == "order_confirmed" and cod:
        return "journey.order_confirmed_cod"
    return f"journey.{journey}"
