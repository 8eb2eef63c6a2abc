"""Hand the conversation to a human agent (the `human` intent, and flows that need a person)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.base import HANDOFF, Escalate, Flow, FlowContext, Reply, StepResult


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.open_orders[0] if len(ctx.open_orders) == 1 else (ctx.orders[0] if len(ctx.orders) == 1 else None)
    reason = "customer_asked" if ctx.intent.value == "human" else f"unsupported_{ctx.intent.value}"
    return StepResult(next_state=HANDOFF, effects=(Reply("handoff.connecting"),
                                                   Escalate(reason=reason, order_id=order.order_id if order else None)))


FLOW = Flow(name="handoff", start=start, states={}, start_goes_to=(HANDOFF,), intents=frozenset({"human"}),
            description="escalate to a human agent")
