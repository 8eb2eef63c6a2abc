"""Delivery instructions: "it's a gated community, code 4411", "leave it with the security guard".

Directions for the courier are not an address change: the customer's own
words are saved on the order (`extra.delivery_instructions`) and sent to the
logistics system (`delivery.instructions_updated`), and the customer is told
so. Nothing else about the order changes, so no read-back is needed. Reached
from a message the classifier could not place (small talk) that carries a
`delivery_instruction` entity. Never for an order already delivered or closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flows.base import END, EmitEvent, Flow, FlowContext, OrderView, Reply, State, StepResult, UpdateOrder
from flows.common import CHOOSE_ORDER, choose_step, reask_which, select_order
from intents import Expecting

NOT_YET_DELIVERED = {"placed", "confirmed", "packed", "shipped", "delayed", "failed_attempt", "out_for_delivery"}


def instruction(ctx: FlowContext) -> str | None:
    found = ctx.classification.entity("delivery_instruction")
    return str(found.value) if found is not None else None


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    text = instruction(ctx) or ""
    candidates = tuple(o for o in ctx.orders if o.status in NOT_YET_DELIVERED)
    if not text or not candidates:
        return StepResult(next_state=END, effects=(Reply("instructions.nothing_to_deliver"),), understood=bool(text))
    return select_order(ctx, candidates, {"instructions": text}, save)


def save(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    text = str(slots.get("instructions", ""))[:300]
    return StepResult(next_state=END, effects=(
        UpdateOrder(order.order_id, {"extra": {"delivery_instructions": text}}, event_type="instructions_updated",
                    note="customer gave delivery instructions"),
        EmitEvent("delivery.instructions_updated", order.order_id, {"instructions": text}),
        Reply("instructions.saved", {"order": order, "instructions": text}, order_id=order.order_id),
    ))


FLOW = Flow(
    name="instructions",
    timeout=timedelta(hours=2),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE_ORDER),
    states={
        CHOOSE_ORDER: State(choose_step(save), Expecting.CHOICE, goes_to=(END, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
    },
    intents=frozenset(),
    description="Directions for the courier: saved on the order and sent to logistics (not an address change).",
)
