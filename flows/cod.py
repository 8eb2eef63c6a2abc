"""Cash-on-delivery confirmation: confirm a pending COD order, or cancel it with a reason.

The ask names the items and the total from the order ("reply YES to confirm
or NO to cancel"). Yes -> `cod_status=confirmed` + `cod.confirmed`. No -> the
reason, one tap (ordered by mistake / found cheaper / delivery too late /
other) -> `cod_status=cancelled` (and the order `cancelled` if it has not
shipped) + `cod.cancelled` with the reason. Reminders for no reply belong to
the journeys; the proactive ask opens this flow via `flows.proactive`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flows.base import (
    END,
    Effect,
    EmitEvent,
    Flow,
    FlowContext,
    OrderView,
    Reply,
    State,
    StepResult,
    UpdateOrder,
)
from flows.common import ANY_ANSWER, CHOOSE_ORDER, choose_step, reask_which, select_order, yes_no
from intents import Expecting

CONFIRM = "confirm"
REASON = "reason"
REASONS = ("ordered_by_mistake", "found_cheaper", "delivery_too_late", "other")
NOT_SHIPPED = {"placed", "confirmed", "packed"}
_REASON_WORDS = (
    ("ordered_by_mistake", re.compile(r"mistake|by error|accident|galti|sin querer|por error|equivoc", re.I)),
    ("found_cheaper", re.compile(r"cheap|price|sasta|sasti|barato|más barato|mas barato|better deal", re.I)),
    ("delivery_too_late", re.compile(r"late|slow|long|der|deri|time|tarde|tarda|demasiado", re.I)),
    ("other", re.compile(r"^\s*(?:other|others|something else|otro|otra|kuch aur|aur)\s*$", re.I)),
)


def _pending(ctx: FlowContext) -> tuple[OrderView, ...]:
    return tuple(o for o in ctx.orders if is_pending(o))


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    pending = _pending(ctx)
    if not pending:
        confirmed = next((o for o in ctx.orders if o.cod_status == "confirmed"), None)
        if confirmed is not None:
            return StepResult(next_state=END, effects=(Reply("cod.already_confirmed", {"order": confirmed},
                                                             order_id=confirmed.order_id),))
        return StepResult(next_state=END, effects=(Reply("cod.nothing_pending"),))
    return select_order(ctx, pending, {"answer": yes_no(ctx)}, begin)


# A COD confirmation stated outright ("COD confirm hai, cash ready rahega", "confirmo el pedido"), with no negation.
_STATED_CONFIRM = re.compile(r"\b(confirm|confirmed|confirming|confirmo|confirmado|pakka|cash (?:is )?ready|"
                             r"ready rahega|paisa ready|tendre el dinero)\b", re.I)
_NEGATION = re.compile(r"\b(no|not|don'?t|never|nahi|nahin|nhi|mat|cancel|cancelar|cancela)\b", re.I)


def begin(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    # "yes I confirm the cash order" confirms at once; anything else gets the question.
    stated = bool(_STATED_CONFIRM.search(ctx.text)) and not _NEGATION.search(ctx.text)
    if ctx.intent.value == "cod_confirm" and (slots.get("answer") == "yes" or stated):
        return StepResult(next_state=END, effects=confirmed(order, note="customer confirmed cash on delivery"))
    return ask(order)


def amount_answer(ctx: FlowContext) -> StepResult:
    """"How much do I pay?": the amount due in cash, then the confirmation question when it is pending."""
    pending = _pending(ctx)
    if pending:
        order = pending[0]
        asked = ask(order)
        return replace(asked, effects=(Reply("cod.amount_due", {"order": order}, order_id=order.order_id),
                                       *asked.effects))
    cod = next((o for o in ctx.orders if o.payment_method == "cod" and o.is_open), None)
    if cod is not None:
        return StepResult(next_state=END, effects=(Reply("cod.amount_due", {"order": cod}, order_id=cod.order_id),))
    paid = ctx.open_orders[0] if ctx.open_orders else (ctx.orders[0] if ctx.orders else None)
    if paid is None:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    return StepResult(next_state=END, effects=(Reply("cod.nothing_to_pay", {"order": paid}, order_id=paid.order_id),))


def ask(order: OrderView) -> StepResult:
    """The confirmation question (also the proactive opening message)."""
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("cod.ask", {"order": order, "items": order.item_names}, order_id=order.order_id,
                       buttons=(("core.button_yes", "/btn:affirm:yes"), ("core.button_no", "/btn:deny:no"))),),
        slots={"order_id": order.order_id},
        expecting=Expecting.YES_NO,
    )


def is_pending(order: OrderView) -> bool:
    """A cash-on-delivery order still waiting for the customer's yes or no."""
    return order.payment_method == "cod" and order.cod_status == "pending" and order.is_open


def confirmed(order: OrderView, *, note: str) -> tuple[Effect, ...]:
    """What a COD yes does (the customer's, or an agent's on the phone with them)."""
    return (
        UpdateOrder(order.order_id, {"cod_status": "confirmed"}, event_type="cod_confirmed", note=note),
        EmitEvent("cod.confirmed", order.order_id, {"total": order.total, "currency": order.currency}),
        Reply("cod.confirmed", {"order": order}, order_id=order.order_id),
    )


def cancelled(order: OrderView, reason: str, note: str = "") -> tuple[Effect, ...]:
    """What a COD no with its reason does: not shipped yet, the order is cancelled too."""
    changes: dict[str, Any] = {"cod_status": "cancelled", "extra": {"cancel_reason": reason, "cancel_note": note}}
    if order.status in NOT_SHIPPED:
        changes["status"] = "cancelled"
    data: dict[str, Any] = {"reason": reason}
    if note:
        data["note"] = note
    return (
        UpdateOrder(order.order_id, changes, event_type="cod_cancelled", note=f"reason: {reason}"),
        EmitEvent("cod.cancelled", order.order_id, data),
        Reply("cod.cancelled", {"order": order}, order_id=order.order_id),
    )


def confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None or order.cod_status != "pending":
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    answer = yes_no(ctx)
    if ctx.intent.value == "cancel_order":
        answer = "no"
    if answer == "yes":
        return StepResult(next_state=END, effects=confirmed(order, note="customer confirmed cash on delivery"))
    if answer == "no":
        return ask_reason(order)
    if ctx.classification.entity("amount_question") is not None:
        # "Kitna paisa dena hoga?" while we wait for YES/NO: the amount, then the question again.
        asked = ask(order)
        return replace(asked, effects=(Reply("cod.amount_due", {"order": order}, order_id=order.order_id),
                                       *asked.effects))
    return StepResult(next_state=CONFIRM, effects=(Reply("cod.ask_again", {"order": order, "items": order.item_names},
                                                         order_id=order.order_id),),
                      slots=dict(slots), expecting=Expecting.YES_NO, understood=False)


def ask_reason(order: OrderView, *, again: bool = False) -> StepResult:
    return StepResult(
        next_state=REASON,
        effects=(Reply("cod.ask_reason_again" if again else "cod.ask_reason", {"order": order}, order_id=order.order_id,
                       buttons=tuple((f"cod.reason.{r}", f"/btn:choice:{i}") for i, r in enumerate(REASONS, start=1))),),
        slots={"order_id": order.order_id},
        expecting=Expecting.CHOICE,
        choices=REASONS,
        understood=not again,
    )


def _reason_of(ctx: FlowContext) -> tuple[str | None, str]:
    choice = ctx.classification.entity("choice")
    if choice is not None and isinstance(choice.value, int) and 1 <= choice.value <= len(REASONS):
        return REASONS[choice.value - 1], ""
    text = ctx.text.strip()
    if text.isdigit() and 1 <= int(text) <= len(REASONS):
        return REASONS[int(text) - 1], ""
    for reason, pattern in _REASON_WORDS:
        if pattern.search(text):
            return reason, text[:200] if reason == "other" else ""
    if len(text.split()) >= 3:
        return "other", text[:200]  # a reason in their own words
    return None, ""


def reason(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None or order.cod_status != "pending":
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    picked, note = _reason_of(ctx)
    if picked is None:
        if yes_no(ctx) == "no":  # "no, keep it" after all
            return ask(order)
        return ask_reason(order, again=True)
    return StepResult(next_state=END, effects=cancelled(order, picked, note))


def reprompt_confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    return ask(order) if order is not None else StepResult(next_state=END)


def reprompt_reason(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    return ask_reason(order) if order is not None else StepResult(next_state=END)


FLOW = Flow(
    name="cod",
    timeout=timedelta(hours=24),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE_ORDER, CONFIRM),
    states={
        CHOOSE_ORDER: State(choose_step(begin), Expecting.CHOICE, goes_to=(CONFIRM, END, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
        CONFIRM: State(confirm, Expecting.YES_NO, goes_to=(END, REASON, CONFIRM),
                       description="confirm the cash order? YES / NO", reprompt=reprompt_confirm,
                       accepts=frozenset({"cancel_order"})),
        REASON: State(reason, Expecting.CHOICE, goes_to=(END, REASON, CONFIRM),
                      description="why cancel? (one tap)", reprompt=reprompt_reason, accepts=ANY_ANSWER),
    },
    intents=frozenset({"cod_confirm"}),
    description="Confirm a cash-on-delivery order, or cancel it with a reason.",
)
