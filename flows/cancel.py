"""Cancel an order: before shipping confirm, then cancel; after shipping explain the choices.

Before shipping a yes cancels: a COD order becomes `cod_status=cancelled`
(status `cancelled`, nothing was paid) and emits `cod.cancelled`; a prepaid
order becomes `cancel_requested` and emits `order.cancel_requested`, so the
shop can refund. After shipping the bot explains the two choices the customer
really has (refuse the delivery, or return the parcel); it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from flows.common import CHOOSE_ORDER, choose_step, reask_which, select_order, yes_no
from intents import Expecting

CONFIRM = "confirm"
BEFORE_SHIPPING = {"placed", "confirmed", "packed"}
IN_TRANSIT = {"shipped", "out_for_delivery", "delayed", "failed_attempt"}


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    candidates = tuple(o for o in ctx.orders if o.status in BEFORE_SHIPPING | IN_TRANSIT)
    if not candidates:
        pending = next((o for o in ctx.orders if o.status == "cancel_requested"), None)
        if pending is not None:
            return StepResult(next_state=END, effects=(Reply("wismo.cancel_requested", {"order": pending},
                                                             order_id=pending.order_id),))
        return StepResult(next_state=END, effects=(Reply("cancel.nothing_to_cancel"),))
    return select_order(ctx, candidates, _reason(ctx, {}), begin)


def _reason(ctx: FlowContext, slots: Mapping[str, Any]) -> dict[str, Any]:
    """The slots with the cancel reason the customer gave, if this message gives one."""
    found = ctx.classification.entity("cancel_reason")
    if found is None:
        return dict(slots)
    return {**dict(slots), "reason": str(found.value), "reason_text": ctx.text[:300]}


def begin(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if order.status in IN_TRANSIT:
        return StepResult(next_state=END, effects=(Reply("cancel.after_shipping", {"order": order},
                                                         order_id=order.order_id),))
    return ask(order, slots)


def ask(order: OrderView, slots: Mapping[str, Any] | None = None) -> StepResult:
    reason = {k: v for k, v in (slots or {}).items() if k in ("reason", "reason_text")}
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("cancel.ask", {"order": order, "items": order.item_names}, order_id=order.order_id,
                       buttons=(("core.button_yes", "/btn:affirm:yes"), ("core.button_no", "/btn:deny:no"))),),
        slots={"order_id": order.order_id, **reason},
        expecting=Expecting.YES_NO,
    )


def confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None or order.status not in BEFORE_SHIPPING:
        # It shipped (or was cancelled) while we were talking: say so rather than act on stale data.
        if order is not None and order.status in IN_TRANSIT:
            return StepResult(next_state=END, effects=(Reply("cancel.after_shipping", {"order": order},
                                                             order_id=order.order_id),))
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    answer = yes_no(ctx)
    slots = _reason(ctx, slots)
    given = {"customer_reason": slots["reason"], "customer_reason_text": slots["reason_text"]} if slots.get("reason") else {}
    if answer == "yes" or (answer is None and ctx.intent.value == "cancel_order"):
        return StepResult(next_state=END, effects=cancelled(order, given, by="customer"))
    if answer == "no":
        return StepResult(next_state=END, effects=(Reply("cancel.kept", {"order": order}, order_id=order.order_id),))
    return StepResult(next_state=CONFIRM, effects=(Reply("cancel.ask_again", {"order": order}, order_id=order.order_id),),
                      slots=slots, expecting=Expecting.YES_NO, understood=False)


def cancelled(order: OrderView, given: Mapping[str, Any], *, by: str) -> tuple[Effect, ...]:
    """What a confirmed cancel before shipping does (the customer's yes, or an agent's action):
    COD is cancelled outright (`cod.cancelled`); prepaid becomes a request for the shop's refund
    (`order.cancel_requested`). `given`: the customer's reason, if any."""
    if order.payment_method == "cod":
        return (
            UpdateOrder(order.order_id, {"status": "cancelled", "cod_status": "cancelled",
                                         "extra": {"cancel_reason": "customer_cancelled", **given}},
                        event_type="cancelled", note=f"{by} cancelled before shipping"),
            EmitEvent("cod.cancelled", order.order_id, {"reason": "customer_cancelled", **given}),
            Reply("cancel.done_cod", {"order": order}, order_id=order.order_id),
        )
    return (
        UpdateOrder(order.order_id, {"status": "cancel_requested"}, event_type="cancel_requested",
                    note=f"{by} asked to cancel before shipping"),
        EmitEvent("order.cancel_requested", order.order_id, {"total": order.total, "currency": order.currency,
                                                             "payment_method": order.payment_method, **given}),
        Reply("cancel.done_prepaid", {"order": order}, order_id=order.order_id),
    )


def reprompt_confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    return ask(order, slots) if order is not None else StepResult(next_state=END)


FLOW = Flow(
    name="cancel",
    timeout=timedelta(hours=1),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE_ORDER, CONFIRM),
    states={
        CHOOSE_ORDER: State(choose_step(begin), Expecting.CHOICE, goes_to=(CONFIRM, END, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
        CONFIRM: State(confirm, Expecting.YES_NO, goes_to=(END, CONFIRM), description="cancel this order? YES / NO",
                       reprompt=reprompt_confirm),
    },
    intents=frozenset({"cancel_order"}),
    description="Cancel before shipping (COD: cod.cancelled; prepaid: order.cancel_requested); after shipping, explain.",
)
