"""Short, polite, useful answers: greet, thanks, yes/no out of context, opt-out, out of scope, gibberish.

Never claims anything about an order; points the customer at what the bot can
do. An `opt_out` said in words ("don't message me any more") turns messages
off on that channel, the same as the STOP keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.base import END, Flow, FlowContext, Reply, SetOptOut, StepResult, done


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    intent = ctx.intent.value
    if intent in {"greet", "thanks", "affirm", "deny"}:
        return done(Reply(f"smalltalk.{intent}", {"has_orders": bool(ctx.orders)}))
    if intent == "opt_out":
        return done(Reply("smalltalk.opt_out"), SetOptOut(opted_out=True))
    if intent == "choice":
        # A menu pick with no menu open (the question timed out): say so and show the menu.
        return done(Reply("smalltalk.no_open_question"), understood=False)
    return done(Reply("smalltalk.out_of_scope"), understood=False)


FLOW = Flow(name="smalltalk", start=start, states={}, start_goes_to=(END,),
            intents=frozenset({"greet", "thanks", "affirm", "deny", "opt_out", "out_of_scope"}),
            description="greet, thanks, yes/no out of context, opt-out, out of scope, gibberish")
