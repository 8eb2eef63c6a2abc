"""WISMO ("where is my order?"): status, expected date, carrier and tracking link.

Grounded: every fact in the reply comes from the order snapshot. With several
open orders the customer picks one by number, order id or item name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.base import END, Flow, FlowContext, OrderView, Reply, State, StepResult, done
from intents import Expecting

CHOOSE = "choose_order"
DELIVERED_CHECK = "delivered_check"


def status_reply(order: OrderView) -> Reply:
    template = f"wismo.{order.status}"
    return Reply(
        template=template,
        vars={"order": order, "expected": order.expected_date, "items": order.item_names},
        order_id=order.order_id,
    )


def _answer(order: OrderView) -> StepResult:
    if order.status == "delivered":
        return StepResult(
            next_state=DELIVERED_CHECK,
            effects=(status_reply(order),),
            slots={"order_id": order.order_id},
            expecting=Expecting.YES_NO,
        )
    return done(status_reply(order))


def pick_order(text: str, ctx: FlowContext, candidates: tuple[OrderView, ...]) -> OrderView | None:
    """Which of `candidates` the customer means: a 1-based choice, an order id, or an item name."""
    choice = ctx.classification.entity("choice")
    if choice is not None and isinstance(choice.value, int) and 1 <= choice.value <= len(candidates):
        return candidates[choice.value - 1]
    lowered = text.lower().strip()
    if lowered.isdigit() and 1 <= int(lowered) <= len(candidates):
        return candidates[int(lowered) - 1]
    for order in candidates:
        if order.order_id.lower() in lowered:
            return order
    matches = [o for o in candidates if any(str(i.get("name", "")).lower() in lowered for i in o.items if i.get("name"))]
    return matches[0] if len(matches) == 1 else None


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return done(Reply("no_order"))
    ref = ctx.classification.entity("order_ref")
    if ref is not None:
        named = next((o for o in ctx.orders if o.order_id.lower() == str(ref.value).lower()), None)
        if named is not None:
            return _answer(named)
    # Orders arrive newest first; list them oldest first, the way customers count them.
    candidates = tuple(reversed(ctx.open_orders)) or ctx.orders[:1]
    if len(candidates) == 1:
        return _answer(candidates[0])
    return _ask_which(candidates)


def _ask_which(candidates: tuple[OrderView, ...]) -> StepResult:
    return StepResult(
        next_state=CHOOSE,
        effects=(Reply("wismo.which_order", {"orders": candidates}),),
        slots={"candidates": [o.order_id for o in candidates]},
        expecting=Expecting.CHOICE,
        choices=tuple(f"{o.order_id} {o.item_names}" for o in candidates),
    )


def choose(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    ids = list(slots.get("candidates", []))
    candidates = tuple(o for o in (ctx.order(i) for i in ids) if o is not None)
    picked = pick_order(ctx.text, ctx, candidates)
    if picked is None:
        result = _ask_which(candidates)
        return StepResult(
            next_state=result.next_state,
            effects=(Reply("wismo.which_order_again", {"orders": candidates}),),
            slots=result.slots,
            expecting=result.expecting,
            choices=result.choices,
            understood=False,
        )
    return _answer(picked)


def delivered_check(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    yes_no = ctx.classification.entity("yes_no")
    answer = yes_no.value if yes_no is not None else {"affirm": "yes", "deny": "no"}.get(ctx.intent.value)
    if answer == "no":
        return done(Reply("wismo.glad_all_good"))
    if answer == "yes" or ctx.intent.value in {"return_refund", "human"}:
        # Something is wrong with a delivered order: the returns/handoff flows take it from here.
        return StepResult(next_state=END, effects=(Reply("wismo.sorry_whats_wrong"),), slots={})
    return StepResult(
        next_state=DELIVERED_CHECK,
        effects=(Reply("wismo.delivered_check_again"),),
        slots=dict(slots),
        expecting=Expecting.YES_NO,
        understood=False,
    )


FLOW = Flow(
    name="wismo",
    start=start,
    start_goes_to=(END, CHOOSE, DELIVERED_CHECK),
    states={
        CHOOSE: State(choose, Expecting.CHOICE, goes_to=(END, DELIVERED_CHECK, CHOOSE), description="which order?"),
        DELIVERED_CHECK: State(delivered_check, Expecting.YES_NO, goes_to=(END, DELIVERED_CHECK), description="delivered, anything wrong?"),
    },
    description="Where is my order: status, expected date, carrier, tracking link.",
)
