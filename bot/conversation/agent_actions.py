"""An agent acts on an order from the inbox: reschedule, change the address, confirm or cancel
cash on delivery, cancel, close a not-received investigation.

Each action is validated by the very rules the bot applies (the flows' own functions) and produces
the flows' own effects, applied by the one effects runner: the order changes with its order event
(source `agent`), the logistics event goes to the feed and the webhook, and the customer is told in
their language through the outbox (the message log). Nothing here has its own copy of a rule.

Runs in the caller's transaction with the conversation row locked; sends nothing itself; never logs
an address or a phone number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session

from bot.conversation.effects import apply_effects
from bot.conversation.turn import Turn
from bot.core.errors import Conflict, CustomerOptedOut, InvalidInput, NotFound
from bot.core.models import Customer, Order
from bot.core.runtime import Runtime
from bot.store import casework, escalations
from bot.store.orders import customer_orders, customer_view, order_view
from flows import address, cancel, cod, reschedule, wismo
from flows.base import END, Effect, FlowContext, OrderView, StepResult
from intents import Classification, Intent

log = logging.getLogger(__name__)

# What the agent is told when the shop's calendar refuses a day (the customer hears these from the bot).
RESCHEDULE_REFUSALS = {
    "reschedule.not_possible": "this order can no longer be rescheduled (status {status})",
    "reschedule.time_not_offered": "that time is outside the shop's delivery windows",
    "reschedule.past_date": "that day has passed",
    "reschedule.too_far": "at most {max_days} days ahead",
    "reschedule.no_delivery_that_day": "the carrier does not deliver on that day",
}


@dataclass(frozen=True)
class ActionDone:
    action: str
    order_id: str
    summary: str  # for the agent's notice and the escalation's record (no personal data)


def _context(runtime: Runtime, customer: Customer, orders: list[Order], now: datetime, locale: str) -> FlowContext:
    """The flows' view of this customer now, as the bot would see it (an agent's action has no message)."""
    return FlowContext(text="", classification=Classification(intent=Intent.OUT_OF_SCOPE, confidence=1.0),
                       customer=customer_view(customer), orders=tuple(order_view(o) for o in orders), now=now,
                       timezone=customer.timezone or runtime.timezone, channel="", config=runtime.shop_config,
                       locale=locale)


COD_REASONS = cod.REASONS
INVESTIGATION_OUTCOMES = wismo.INVESTIGATION_OUTCOMES


def _can_cancel(order: OrderView) -> bool:
    return order.status in cancel.BEFORE_SHIPPING


def _can_investigate(order: OrderView) -> bool:
    return order.status == "delivered"


def eligible_orders(orders: list[Order]) -> dict[str, list[str]]:
    """For each action, the ids of the customer's orders it applies to now (the inbox offers only these)."""
    views = [order_view(o) for o in orders]
    checks: dict[str, Callable[[OrderView], bool]] = {
        "reschedule": reschedule.can_reschedule, "address": address.can_replace, "cod": cod.is_pending,
        "cancel": _can_cancel, "investigation": _can_investigate}
    return {name: [o.order_id for o in views if check(o)] for name, check in checks.items()}


def delivery_windows(runtime: Runtime) -> dict[str, str]:
    """The shop's named delivery windows (name -> "HH:MM-HH:MM")."""
    section = runtime.shop_config.get("reschedule") or {}
    return dict(section.get("windows") or reschedule.DEFAULT_WINDOWS)


def max_days(runtime: Runtime) -> int:
    return int((runtime.shop_config.get("reschedule") or {}).get("max_days_ahead", 7))


def shop_today(runtime: Runtime, now: datetime) -> date:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(runtime.timezone)).date()


def _reschedule(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    try:
        day = date.fromisoformat(fields.get("delivery_date", "").strip())
    except ValueError:
        raise InvalidInput("delivery_date", "a day as YYYY-MM-DD") from None
    window = fields.get("delivery_window", "").strip() or None
    problem = reschedule.choice_problem(order, day, window, ctx)
    if problem is not None:
        reason = RESCHEDULE_REFUSALS.get(problem, problem).format(status=order.status,
                                                                   max_days=reschedule.max_days_ahead(ctx))
        raise InvalidInput("delivery_date", reason)
    summary = f"rescheduled {order.order_id} to {day.isoformat()}" + (f", {window}" if window else "")
    return reschedule.rescheduled(order, day, window, note="agent rescheduled the delivery"), summary


def _address(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    whole = {key: " ".join(fields.get(key, "").split())[:200]
             for key in ("line1", "line2", "landmark", "city", "postal_code")}
    new, problem = address.new_address_problem(order, whole)
    if problem is not None:
        raise InvalidInput("address", problem)
    return address.replaced(order, new, note="agent changed the address"), f"changed the address of {order.order_id}"


def _cod_confirm(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    if not cod.is_pending(order):
        raise Conflict(f"order {order.order_id} has no cash-on-delivery confirmation pending")
    return cod.confirmed(order, note="agent confirmed cash on delivery with the customer"), \
        f"confirmed cash on delivery for {order.order_id}"


def _cod_cancel(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    if not cod.is_pending(order):
        raise Conflict(f"order {order.order_id} has no cash-on-delivery confirmation pending")
    reason = fields.get("reason", "")
    if reason not in cod.REASONS:
        raise InvalidInput("reason", f"one of {', '.join(cod.REASONS)}")
    return cod.cancelled(order, reason, fields.get("note", "").strip()[:200]), \
        f"cancelled cash on delivery for {order.order_id} ({reason})"


def _cancel(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    if not _can_cancel(order):
        raise Conflict(f"order {order.order_id} is {order.status}: only an order not shipped yet can be cancelled")
    return cancel.cancelled(order, {}, by="agent"), f"cancelled {order.order_id}"


def _investigation(order: OrderView, fields: Mapping[str, str], ctx: FlowContext) -> tuple[tuple[Effect, ...], str]:
    outcome = fields.get("outcome", "")
    if outcome not in wismo.INVESTIGATION_OUTCOMES:
        raise InvalidInput("outcome", f"one of {', '.join(wismo.INVESTIGATION_OUTCOMES)}")
    if not _can_investigate(order):
        raise Conflict(f"order {order.order_id} is {order.status}, not marked delivered")
    return wismo.investigation_closed(order, outcome, note=fields.get("note", "").strip()[:200]), \
        f"closed the not-received investigation of {order.order_id}: {outcome.replace('_', ' ')}"


Builder = Callable[[OrderView, Mapping[str, str], FlowContext], tuple[tuple[Effect, ...], str]]
ACTIONS: dict[str, Builder] = {
    "reschedule": _reschedule,
    "address": _address,
    "cod_confirm": _cod_confirm,
    "cod_cancel": _cod_cancel,
    "cancel": _cancel,
    "investigation": _investigation,
}


def act_on_order(*, session: Session, runtime: Runtime, escalation_id: int, agent: str, action: str,
                 order_id: str, fields: Mapping[str, str], now: datetime) -> ActionDone:
    """Apply one agent action to one of the escalated customer's orders (never another customer's)."""
    builder = ACTIONS.get(action)
    if builder is None:
        raise InvalidInput("action", f"one of {', '.join(ACTIONS)}")
    escalation, conversation = escalations.locked_for_agent(session=session, escalation_id=escalation_id)
    customer = session.get(Customer, escalation.customer_id)
    assert customer is not None
    orders = customer_orders(session=session, customer_id=escalation.customer_id)
    order = next((o for o in orders if o.order_id == order_id), None)
    if order is None:
        raise NotFound(f"order {order_id!r} is not one of this customer's orders")
    if conversation.channel in customer.opted_out_channels:
        raise CustomerOptedOut(f"the customer opted out of {conversation.channel}; nothing was changed")
    remembered = conversation.slots.get("_locale")
    locale = remembered if isinstance(remembered, str) and remembered else customer.locale
    ctx = _context(runtime, customer, orders, now, locale)
    effects, summary = builder(order_view(order), fields, ctx)
    apply_effects(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
                  result=StepResult(next_state=END, effects=effects), turn=Turn(classification=None), now=now,
                  locale=locale, source="agent")
    escalations.answered(session=session, escalation=escalation, conversation=conversation, agent=agent, now=now)
    casework.add_note(session=session, escalation=escalation, kind="action", author=agent, outcome=action,
                      body=summary, now=now)
    log.info("agent action escalation=%s action=%s", escalation.id, action)
    return ActionDone(action=action, order_id=order.order_id, summary=summary)
