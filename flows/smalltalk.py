"""Short, polite answers for greet, thanks, affirm/deny out of context and out-of-scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.base import END, Flow, FlowContext, Reply, StepResult, done


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    intent = ctx.intent.value
    if intent in {"greet", "thanks", "affirm", "deny"}:
        return done(Reply(f"smalltalk.{intent}"))
    return done(Reply("smalltalk.out_of_scope"), understood=False)


FLOW = Flow(name="smalltalk", start=start, states={}, start_goes_to=(END,), description="greet, thanks, yes/no out of context, out of scope")
