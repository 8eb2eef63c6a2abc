"""CSAT: the customer's one-tap answer to "how did we do?" after a person resolved their escalation.

Opened by the resolve (`bot.conversation.csat`), never by an intent: the question goes out with five
buttons, and the reply (a button, or a 1-5 in the text) becomes a `RateEscalation` effect stored on
the escalation, then a thank-you. Anything else is asked once more, then let go: a survey never
traps the customer (their next message is read afresh). Pure: no database, no provider SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flows.base import END, Flow, FlowContext, RateEscalation, Reply, State, StepResult, done
from intents import Expecting

RATING = "rating"
SCORES = (1, 2, 3, 4, 5)
_SCORE_TEXT = re.compile(r"^\D{0,15}?\b([1-5])\b(?:\s*(?:/|out of|de|me se)\s*5)?\D{0,30}$", re.IGNORECASE)


def parse_score(ctx: FlowContext) -> int | None:
    """1-5 from a button (a `choice`), a number entity, or the text ("5", "4/5", "I'd give 3")."""
    for kind in ("choice", "number"):
        entity = ctx.classification.entity(kind)
        if entity is not None:
            try:
                value = int(entity.value)
            except (TypeError, ValueError):
                continue
            if value in SCORES:
                return value
    match = _SCORE_TEXT.match(ctx.text.strip())
    return int(match.group(1)) if match else None


def ask(escalation_id: int) -> StepResult:
    """The question, with one button per score; the answer lands in RATING."""
    return StepResult(
        next_state=RATING,
        effects=(Reply("csat.ask", buttons=tuple((f"csat.button_{n}", f"/btn:choice:{n}") for n in SCORES)),),
        slots={"escalation_id": escalation_id},
        expecting=Expecting.CHOICE,
        choices=tuple(str(n) for n in SCORES),
    )


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    """Not reachable from an intent; the resolve opens the flow in RATING directly."""
    return done()


def rating(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    escalation_id = int(slots.get("escalation_id") or 0)
    score = parse_score(ctx)
    if score is None:
        if slots.get("asked_again") or not escalation_id:
            return StepResult(next_state=END, understood=False)  # let it go; the message is read afresh next time
        return StepResult(next_state=RATING, effects=(Reply("csat.retry"),), slots={**slots, "asked_again": True},
                          expecting=Expecting.CHOICE, choices=tuple(str(n) for n in SCORES), understood=False)
    return done(RateEscalation(escalation_id=escalation_id, score=score),
                Reply("csat.thanks_low" if score <= 2 else "csat.thanks", vars={"score": score}))


FLOW = Flow(
    name="csat",
    start=start,
    states={RATING: State(step=rating, expecting=Expecting.CHOICE, goes_to=(RATING, END),
                          description="waiting for a 1-5 rating of the person's help")},
    timeout=timedelta(days=1),
    description="After a resolve: one tap 1-5 rates the help, stored on the escalation and shown in the inbox.",
)
