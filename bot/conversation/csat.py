"""The one-tap CSAT question after a person resolved an escalation (doorstep.yaml `inbox.csat`).

Queues the question (`flows.csat.ask`) on the customer's channel through the outbox and opens the csat
flow so their tap lands in it; the flow's `RateEscalation` effect stores the score on the escalation.
Runs in the caller's transaction; sends nothing itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.core.models import Conversation, Customer, Escalation
from bot.core.runtime import Runtime
from bot.store import consent, outbox
from bot.store.conversations import open_flow, render_label, render_reply
from flows import csat
from flows.base import Reply


def ask_csat(*, session: Session, runtime: Runtime, escalation: Escalation, now: datetime,
             enabled: bool | None = None) -> bool:
    """Ask the customer to rate the help they got; False (nothing sent) when it is off (`enabled`, else the
    shop's `inbox.csat`), the customer opted out of the channel, it was asked already, or another question
    is open."""
    if enabled is None:
        enabled = bool((runtime.shop_config.get("inbox") or {}).get("csat", False))
    if not enabled or escalation.csat_asked_at is not None:
        return False
    conversation = session.get(Conversation, escalation.conversation_id)
    customer = session.get(Customer, escalation.customer_id)
    if conversation is None or customer is None or consent.opted_out(customer, conversation.channel):
        return False  # (an email unsubscribe counts: a rating question is not an answer to them)
    if conversation.flow and conversation.expires_at is not None and conversation.expires_at > now:
        return False  # a released question (COD, feedback) waits for its answer: one question at a time
    result = csat.ask(escalation.id or 0)
    locale = str(conversation.slots.get("_locale") or customer.locale)
    for effect in result.effects:
        if isinstance(effect, Reply):
            buttons = [(render_label(label, customer, runtime, locale), payload) for label, payload in effect.buttons]
            outbox.enqueue_message(session=session, customer=customer, channel=conversation.channel,
                                   text=render_reply(effect, customer=customer, runtime=runtime, locale=locale),
                                   conversation_id=conversation.id, template=effect.template, buttons=buttons,
                                   now=now, dedupe_key=f"csat:{escalation.id}")
    open_flow(session=session, conversation=conversation, flow=csat.FLOW, now=now, runtime=runtime,
              state=csat.RATING, slots=dict(result.slots), expecting=result.expecting, choices=result.choices)
    escalation.csat_asked_at = now
    session.add(escalation)
    return True
