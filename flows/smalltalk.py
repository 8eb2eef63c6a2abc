"""Short, polite, useful answers: greet, thanks, yes/no out of context, opt-out, out of scope, gibberish.

Never claims anything about an order; points the customer at what the bot can
do. An `opt_out` said in words ("don't message me any more") is confirmed
first: a sentence can be misread ("please stop the courier" is about a
parcel), and unsubscribing someone by mistake silences their delivery
updates. The whole-message STOP keyword (bot.conversation.compliance) acts at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flows import cod, instructions
from flows.base import END, Flow, FlowContext, Reply, SetOptOut, State, StepResult, done
from flows.common import yes_no
from intents import Expecting

CONFIRM_OPT_OUT = "confirm_opt_out"


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    intent = ctx.intent.value
    if intent in {"greet", "thanks", "affirm", "deny"}:
        return done(Reply(f"smalltalk.{intent}", {"has_orders": bool(ctx.orders)}))
    if intent == "opt_out":
        return StepResult(next_state=CONFIRM_OPT_OUT, effects=(Reply("smalltalk.opt_out_ask"),),
                          expecting=Expecting.YES_NO)
    if intent == "choice":
        # A menu pick with no menu open (the question timed out): say so and show the menu.
        return done(Reply("smalltalk.no_open_question"), understood=False)
    if instructions.instruction(ctx) is not None:
        # "It's a gated community, code 4411": directions for the courier, not small talk.
        return replace(instructions.start(slots, ctx), flow=instructions.FLOW.name)
    if ctx.classification.entity("amount_question") is not None:
        return replace(cod.amount_answer(ctx), flow=cod.FLOW.name)
    return done(Reply("smalltalk.out_of_scope"), understood=False)


def confirm_opt_out(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    answer = yes_no(ctx)
    if answer == "yes" or ctx.intent.value == "opt_out":
        return done(Reply("smalltalk.opt_out"), SetOptOut(opted_out=True))
    if answer == "no":
        return done(Reply("smalltalk.opt_out_kept"))
    return StepResult(next_state=CONFIRM_OPT_OUT, effects=(Reply("smalltalk.opt_out_ask"),),
                      expecting=Expecting.YES_NO, understood=False)


FLOW = Flow(name="smalltalk", start=start, start_goes_to=(END, CONFIRM_OPT_OUT),
            states={CONFIRM_OPT_OUT: State(confirm_opt_out, Expecting.YES_NO, goes_to=(END, CONFIRM_OPT_OUT),
                                           description="stop all messages? (said in words)")},
            intents=frozenset({"greet", "thanks", "affirm", "deny", "opt_out", "out_of_scope"}),
            description="greet, thanks, yes/no out of context, opt-out, out of scope, gibberish")
