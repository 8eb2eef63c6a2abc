"""The conversation engine: classify one inbound message, run its flow, apply effects.

Runs inside the gateway's transaction, with the conversation row locked.
Flows are pure; this module is the one runner that turns their effects into
rows (order changes, order events, logistics events, escalations, outbound
messages). It never sends anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot import compliance, escalations, outbox, replies
from bot.models import Conversation, Customer, Message, Order, utcnow
from bot.orders import customer_orders, customer_view, order_view, record_event
from flows.base import (
    END,
    HANDOFF,
    EmitEvent,
    Escalate,
    Flow,
    FlowContext,
    Reply,
    SetOptOut,
    StepResult,
    UpdateOrder,
)
from flows.registry import FLOWS, FLOWS_BY_NAME
from intents import Classification, Context, Expecting, Intent, classify

log = logging.getLogger(__name__)

# Order fields a flow may change through UpdateOrder.
UPDATABLE_ORDER_FIELDS = {"delivery_date", "delivery_window", "cod_status", "address_status", "shipping_address", "status", "extra"}
HUMAN_OWNERS = {"waiting_human", "human"}


@dataclass
class Runtime:
    """What the engine needs from the running service; tests inject the clock."""

    timezone: str = "UTC"
    shop_config: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow
    classifier: Callable[[str, Context], Classification] = classify

    def now(self) -> datetime:
        return self.clock()


@dataclass
class Turn:
    """Everything one inbound message produced (for the CLI, tests and metrics)."""

    classification: Classification | None
    replies: list[Message] = field(default_factory=list)
    flow: str | None = None
    escalated: bool = False


def _classify(runtime: Runtime, conversation: Conversation, customer: Customer, text: str, now: datetime) -> Classification:
    expecting = Expecting(conversation.slots.get("_expecting", Expecting.NOTHING.value)) if conversation.flow else Expecting.NOTHING
    context = Context(
        expecting=expecting,
        choices=tuple(conversation.slots.get("_choices", ())) if conversation.flow else (),
        now=now,
        timezone=customer.timezone or runtime.timezone,
        locale=customer.locale,
    )
    return runtime.classifier(text, context)


def handle_message(*, session: Session, runtime: Runtime, conversation: Conversation, customer: Customer,
                   message: Message) -> Turn:
    now = runtime.now()
    if conversation.flow and conversation.expires_at is not None and conversation.expires_at <= now:
        _clear_flow(conversation)  # TIMEOUT: the next message is classified afresh

    classification = _classify(runtime, conversation, customer, message.text, now)
    message.intent = classification.intent.value
    message.confidence = round(classification.confidence, 4)
    message.entities = [e.as_dict() for e in classification.entities]
    turn = Turn(classification=classification)
    orders = customer_orders(session=session, customer_id=customer.id or 0)

    keyword_effects = compliance.pre_flow(session=session, conversation=conversation, customer=customer,
                                          message=message, classification=classification)
    if keyword_effects is not None:
        _apply(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
               result=StepResult(next_state=END, effects=tuple(keyword_effects)), turn=turn, now=now)
        return turn

    if conversation.owner in HUMAN_OWNERS:
        # A person owns this conversation: the bot stays quiet (bar an optional one-time
        # acknowledgement), and the agent sees the message.
        ack = escalations.on_inbound_while_human(session=session, conversation=conversation, customer=customer,
                                                 message=message, config=runtime.shop_config)
        _apply(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
               result=StepResult(next_state=END, effects=tuple(ack)), turn=turn, now=now)
        return turn

    if conversation.owner == "resolved":
        conversation.owner = "bot"
    ctx = FlowContext(
        text=message.text,
        classification=classification,
        customer=customer_view(customer),
        orders=tuple(order_view(o) for o in orders),
        now=now,
        timezone=customer.timezone or runtime.timezone,
        channel=message.channel,
        config=runtime.shop_config,
    )
    flow, result = _run_flow(conversation, ctx)
    turn.flow = flow.name
    _apply(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
           result=result, turn=turn, now=now)
    _advance(conversation, flow, result, now)
    return turn


def _run_flow(conversation: Conversation, ctx: FlowContext) -> tuple[Flow, StepResult]:
    active = FLOWS_BY_NAME.get(conversation.flow or "")
    if active is not None and conversation.state in active.states:
        slots = {k: v for k, v in conversation.slots.items() if not k.startswith("_")}
        return active, active.states[conversation.state].step(slots, ctx)
    flow = FLOWS.get(ctx.intent) or FLOWS[Intent.OUT_OF_SCOPE]
    return flow, flow.start({}, ctx)


def _advance(conversation: Conversation, flow: Flow, result: StepResult, now: datetime) -> None:
    conversation.misunderstandings = 0 if result.understood else conversation.misunderstandings + 1
    if result.next_state in (END, HANDOFF) or conversation.owner in HUMAN_OWNERS:
        _clear_flow(conversation)
    else:
        conversation.flow = flow.name
        conversation.state = result.next_state
        conversation.slots = {**dict(result.slots), "_expecting": result.expecting.value, "_choices": list(result.choices)}
        conversation.expires_at = now + flow.timeout
    conversation.updated_at = now


def _clear_flow(conversation: Conversation) -> None:
    conversation.flow = None
    conversation.state = ""
    conversation.slots = {}
    conversation.expires_at = None


def _apply(*, session: Session, runtime: Runtime, conversation: Conversation, customer: Customer,
           orders: list[Order], result: StepResult, turn: Turn, now: datetime) -> None:
    by_id = {o.order_id: o for o in orders}
    for effect in result.effects:
        if isinstance(effect, Reply):
            order = by_id.get(effect.order_id or "")
            text = render_reply(effect, customer=customer, runtime=runtime)
            msg = outbox.enqueue_message(
                session=session, customer=customer, channel=conversation.channel, text=text,
                conversation_id=conversation.id, order_pk=order.id if order else None,
                template=effect.template, buttons=list(effect.buttons) or None, now=now,
            )
            if msg is not None:
                turn.replies.append(msg)
        elif isinstance(effect, UpdateOrder):
            order = by_id[effect.order_id]
            for key, value in effect.changes.items():
                if key not in UPDATABLE_ORDER_FIELDS:
                    raise ValueError(f"flow tried to change order field {key!r}")
                setattr(order, key, value)
            order.updated_at = now
            session.add(order)
            if effect.event_type:
                record_event(session=session, order=order, type_=effect.event_type, note=effect.note,
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
                              sla_minutes=int(runtime.shop_config.get("escalation", {}).get("sla_minutes", 30)))
            turn.escalated = True
        elif isinstance(effect, SetOptOut):
            channel = effect.channel or conversation.channel
            channels = set(customer.opted_out_channels)
            channels = channels | {channel} if effect.opted_out else channels - {channel}
            customer.opted_out_channels = sorted(channels)
            session.add(customer)


def render_reply(reply: Reply, *, customer: Customer, runtime: Runtime) -> str:
    variables = {
        "shop_name": runtime.shop_config.get("shop_name", "our shop"),
        "support_contact": runtime.shop_config.get("support_contact", "our support team"),
        "customer_name": customer.name.split(" ")[0] if customer.name else "",
        **dict(reply.vars),
    }
    return replies.render(reply.template, customer.locale, **variables)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
