"""The one runner of flow effects: replies, order changes, events, escalations, opt-outs become rows.

Used by the engine for every turn and by the Rasa action server (integrations/rasa_actions.py), so both
change orders the same way. Runs in the caller's transaction; sends nothing itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.conversation.turn import Turn
from bot.core.models import Conversation, Customer, Order
from bot.core.runtime import Runtime
from bot.store import consent, escalations, outbox
from bot.store.conversations import render_buttons, render_reply
from bot.store.orders import record_event
from flows.base import EmitEvent, Escalate, RateEscalation, Reply, SetOptOut, StepResult, UpdateOrder

# Order fields a flow may change through UpdateOrder.
UPDATABLE_ORDER_FIELDS = {"delivery_date", "delivery_window", "cod_status", "address_status", "shipping_address", "status", "extra"}


def sla_minutes(runtime: Runtime, *, urgent: bool) -> int:
    section = runtime.shop_config.get("escalation", {})
    normal = int(section.get("sla_minutes", 30))
    return min(normal, int(section.get("urgent_sla_minutes", 10))) if urgent else normal


def apply_effects(*, session: Session, runtime: Runtime, conversation: Conversation, customer: Customer,
           orders: list[Order], result: StepResult, turn: Turn, now: datetime, locale: str | None = None,
           source: str = "bot") -> None:
    """`source`: who made the order changes, on their order events (`bot`, or `agent` from the inbox)."""
    by_id = {o.order_id: o for o in orders}
    for effect in result.effects:
        if isinstance(effect, Reply):
            order = by_id.get(effect.order_id or "")
            text = render_reply(effect, customer=customer, runtime=runtime, locale=locale)
            msg = outbox.enqueue_message(
                session=session, customer=customer, channel=conversation.channel, text=text,
                conversation_id=conversation.id, order_pk=order.id if order else None, template=effect.template,
                buttons=render_buttons(effect, customer=customer, runtime=runtime, locale=locale), now=now,
                locale=locale, flush=False,  # flushed with the batch
            )
            if msg is not None:
                turn.replies.append(msg)
        elif isinstance(effect, UpdateOrder):
            order = by_id[effect.order_id]
            for key, value in effect.changes.items():
                if key not in UPDATABLE_ORDER_FIELDS:
                    raise ValueError(f"flow tried to change order field {key!r}")
                if key == "extra":
                    value = {**order.extra, **dict(value)}  # bookkeeping accumulates (cancel reason, NPS, …)
                setattr(order, key, value)
            order.updated_at = now
            session.add(order)
            if effect.changes.get("cod_status") == "confirmed":
                turn.cod_confirmed.append(order.order_id)
            if effect.changes.get("cod_status") in {"confirmed", "cancelled"}:
                # The customer answered: a reminder still waiting (e.g. held by quiet hours) must not go out.
                outbox.cancel_superseded(session, order=order, journeys=("cod_reminder",),
                                         timers=("cod_reminder", "cod_escalation"),
                                         reason=f"cash on delivery {effect.changes['cod_status']}", now=now)
            if effect.event_type:
                record_event(session=session, order=order, type_=effect.event_type, note=effect.note, source=source,
                             data={k: _jsonable(v) for k, v in effect.changes.items()})
        elif isinstance(effect, EmitEvent):
            order = by_id.get(effect.order_id or "")
            outbox.emit_event(session=session, type_=effect.type, order_id=effect.order_id,
                              order_pk=order.id if order else None, data=dict(effect.data), now=now)
        elif isinstance(effect, Escalate):
            order = by_id.get(effect.order_id or "")
            session.flush()
            escalations.create_escalation(session=session, conversation=conversation, customer=customer, order=order,
                              reason=effect.reason, note=effect.note, now=now,
                              sla_minutes=sla_minutes(runtime, urgent=effect.urgent))
            turn.escalated = True
        elif isinstance(effect, RateEscalation):
            escalations.record_csat(session=session, escalation_id=effect.escalation_id, customer_id=customer.id or 0,
                                    score=effect.score, now=now)
        elif isinstance(effect, SetOptOut):
            consent.set_consent(session, customer, effect.channel or conversation.channel, opted_out=effect.opted_out,
                                source=effect.source, detail=effect.detail, now=now)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
