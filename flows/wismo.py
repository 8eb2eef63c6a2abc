"""WISMO ("where is my order?"): status, expected date, carrier and tracking link.

Grounded: every fact in the reply comes from the order snapshot (a delayed
order gets the carrier's new ETA and an apology). With several open orders
the customer picks one by number, order id or item name. A delivered order
gets "delivered on X, is anything wrong?"; yes leads into the returns flow,
asking for a person leads to a human. "It says delivered but I never got it"
(a `problem` entity, see `intents.problems`) goes to a person at once, urgently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flows import reschedule, returns
from flows.base import (
    END,
    HANDOFF,
    Effect,
    EmitEvent,
    Escalate,
    Flow,
    FlowContext,
    OrderView,
    Reply,
    State,
    StepResult,
    UpdateOrder,
    done,
)
from flows.common import CHOOSE_ORDER, choose_step, named_order, reask_which, select_order, yes_no
from intents import Expecting

CHOOSE = CHOOSE_ORDER
# "…can you send it Saturday instead", "kal bhej do", "¿me lo traéis el viernes?": a WISMO that also asks to move the day.
_CHANGE_CUE = re.compile(
    r"\b(send|deliver|bring|ship|reschedule|move|change|instead|come|bhej|bhejo|bhejna|bhej do|le aao|la do|"
    r"traer|traeis|traigan|traes|entregar|entregad|enviar|envi[ae]|cambiar|mejor)\b", re.IGNORECASE)
DELIVERED_CHECK = "delivered_check"


def status_reply(order: OrderView) -> Reply:
    return Reply(
        template=f"wismo.{order.status}",
        vars={"order": order, "expected": order.expected_date, "items": order.item_names},
        order_id=order.order_id,
    )


def not_received(order: OrderView, ctx: FlowContext) -> StepResult:
    """Marked delivered, never received: a person investigates with the courier, urgently."""
    return StepResult(next_state=HANDOFF, effects=(
        Reply("wismo.not_received", {"order": order}, order_id=order.order_id),
        Escalate(reason="not_received", order_id=order.order_id, urgent=True,
                 note=f"marked delivered, customer says not received: {ctx.text[:300]}"),
    ))


# What a person's investigation of a "delivered, never received" order found (the agent records it).
INVESTIGATION_OUTCOMES = ("found_delivered", "reshipped", "refunded")


def investigation_closed(order: OrderView, outcome: str, *, note: str = "") -> tuple[Effect, ...]:
    """The end of a not-received investigation: recorded on the order (with its event), sent to
    logistics as `order.investigation_closed`, and told to the customer."""
    data: dict[str, Any] = {"outcome": outcome}
    if note:
        data["note"] = note
    return (
        UpdateOrder(order.order_id, {"extra": {"investigation": outcome, "investigation_note": note}},
                    event_type="investigation_closed", note=f"not received, investigated: {outcome}"),
        EmitEvent("order.investigation_closed", order.order_id, data),
        Reply(f"wismo.investigation_{outcome}", {"order": order}, order_id=order.order_id),
    )


def _says_not_received(ctx: FlowContext) -> bool:
    problem = ctx.classification.entity("problem")
    return problem is not None and problem.value == "not_received"


def answer(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if order.status == "delivered" and _says_not_received(ctx):
        return not_received(order, ctx)
    if ctx.intent.value == "wismo" and _CHANGE_CUE.search(ctx.text):
        # Two things in one message: the status, then the read-back of the new day.
        moved = reschedule.continue_from(order, ctx)
        if moved is not None:
            return replace(moved, effects=(status_reply(order), *moved.effects))
    if order.status == "delivered":
        return StepResult(
            next_state=DELIVERED_CHECK,
            effects=(status_reply(order),),
            slots={"order_id": order.order_id},
            expecting=Expecting.YES_NO,
        )
    return done(status_reply(order))


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return done(Reply("no_order"))
    named = named_order(ctx, ctx.orders)
    if named is not None:
        return answer(named, slots, ctx)
    # With nothing open, the most recent order is the one they mean.
    candidates = ctx.open_orders or ctx.orders[:1]
    return select_order(ctx, candidates, {}, answer)


def delivered_check(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return done(Reply("core.order_gone"))
    if ctx.intent.value == "human":
        return StepResult(next_state=HANDOFF, effects=(Reply("handoff.connecting"),
                                                       Escalate(reason="customer_asked", order_id=order.order_id)))
    if _says_not_received(ctx):
        return not_received(order, ctx)
    reply = yes_no(ctx)
    if reply == "no":
        return done(Reply("wismo.glad_all_good"))
    if reply == "yes" or ctx.intent.value == "return_refund":
        # Something is wrong with a delivered order: the returns flow takes it from here.
        return returns.enter_after_delivery(order)
    return StepResult(
        next_state=DELIVERED_CHECK,
        effects=(Reply("wismo.delivered_check_again"),),
        slots=dict(slots),
        expecting=Expecting.YES_NO,
        understood=False,
    )


def reprompt_delivered(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    return StepResult(next_state=DELIVERED_CHECK, effects=(Reply("wismo.delivered_check_again"),), slots=dict(slots),
                      expecting=Expecting.YES_NO)


FLOW = Flow(
    name="wismo",
    timeout=timedelta(minutes=30),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE, DELIVERED_CHECK, HANDOFF),
    states={
        CHOOSE: State(choose_step(answer), Expecting.CHOICE, goes_to=(END, DELIVERED_CHECK, CHOOSE, HANDOFF),
                      description="which order?", reprompt=reask_which, accepts=frozenset({"wismo"})),
        DELIVERED_CHECK: State(delivered_check, Expecting.YES_NO, goes_to=(END, "returns.ask_reason", HANDOFF, DELIVERED_CHECK),
                               description="delivered, anything wrong?", reprompt=reprompt_delivered,
                               accepts=frozenset({"return_refund", "human"})),
    },
    intents=frozenset({"wismo"}),
    description="Where is my order: status, expected date, carrier, tracking link.",
)
