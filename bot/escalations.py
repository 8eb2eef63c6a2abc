"""Escalations: hand a conversation to a human with the full context packet.

Writes the escalation, flips the conversation's owner and queues
`escalation.created` in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from bot import outbox
from bot.models import Conversation, Customer, Escalation, Message, Order, utcnow
from bot.orders import order_public
from flows.base import Effect

TRANSCRIPT_LIMIT = 50


def context_packet(*, session: Session, conversation: Conversation, customer: Customer, order: Order | None,
                   actions: list[str] | None = None) -> dict[str, Any]:
    """Everything an agent needs so the customer never repeats themselves."""
    messages = list(session.exec(
        select(Message).where(Message.conversation_id == conversation.id)
        .order_by(col(Message.id).desc()).limit(TRANSCRIPT_LIMIT)
    ))[::-1]
    return {
        "customer": {"name": customer.name, "locale": customer.locale, "channel": conversation.channel},
        "order": order_public(order, customer).model_dump(mode="json") if order is not None else None,
        "transcript": [
            {"direction": m.direction, "text": m.text, "intent": m.intent, "confidence": m.confidence,
             "at": m.created_at.isoformat(), "media_urls": m.media_urls}
            for m in messages
        ],
        "slots": {k: v for k, v in conversation.slots.items() if not k.startswith("_")},
        "flow": conversation.flow,
        "actions": actions or [],
        "media_urls": [u for m in messages for u in m.media_urls],
    }


def open_escalation_for(*, session: Session, conversation_id: int) -> Escalation | None:
    return session.exec(
        select(Escalation).where(Escalation.conversation_id == conversation_id, col(Escalation.status).in_(["open", "assigned"]))
    ).first()


def on_inbound_while_human(*, session: Session, conversation: Conversation, customer: Customer, message: Message,
                           config: dict[str, Any]) -> list[Effect]:
    """Effects for a customer message while a human owns the conversation (none by default)."""
    return []


def create_escalation(*, session: Session, conversation: Conversation, customer: Customer, order: Order | None,
                      reason: str, note: str = "", sla_minutes: int = 30, actions: list[str] | None = None,
                      now: datetime | None = None) -> Escalation:
    now = now or utcnow()
    existing = open_escalation_for(session=session, conversation_id=conversation.id or 0)
    if existing is not None:
        return existing
    escalation = Escalation(
        conversation_id=conversation.id,  # type: ignore[arg-type]
        customer_id=customer.id,  # type: ignore[arg-type]
        order_pk=order.id if order else None,
        reason=reason,
        note=note,
        context=context_packet(session=session, conversation=conversation, customer=customer, order=order, actions=actions),
        sla_due_at=now + timedelta(minutes=sla_minutes),
        created_at=now,
        updated_at=now,
    )
    session.add(escalation)
    session.flush()
    conversation.owner = "waiting_human"
    conversation.flow = None
    conversation.state = ""
    session.add(conversation)
    outbox.emit_event(session=session, type_="escalation.created", order_id=order.order_id if order else None,
                      order_pk=order.id if order else None, now=now,
                      data={"escalation_id": escalation.id, "reason": reason})
    return escalation
