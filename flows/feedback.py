"""Feedback (NPS): the reply to the "how likely are you to recommend us, 0–10?" survey.

Opened proactively by the feedback journey (`bot.journeys.hooks`), never by an
intent. A 0–10 score is recorded as an order event (`feedback`, note
`NPS <n>/10`); a promoter (9–10) gets the shop's review link, a detractor
(0–6) is escalated to a person. Pure: no database, no provider SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flows.base import END, HANDOFF, Escalate, Flow, FlowContext, Reply, State, StepResult, UpdateOrder, done
from intents import Expecting

SCORE = "score"
_SCORE_TEXT = re.compile(r"^\D{0,20}?\b(10|[0-9])\b(?:\s*(?:/|out of)\s*10)?\D{0,40}$", re.IGNORECASE)


def parse_score(ctx: FlowContext) -> int | None:
    """The 0–10 score in the reply ("9", "9/10", "I'd say 7"), or None."""
    entity = ctx.classification.entity("number")
    if entity is not None:
        try:
            value = int(entity.value)
        except (TypeError, ValueError):
            value = -1
        if 0 <= value <= 10:
            return value
    match = _SCORE_TEXT.match(ctx.text.strip())
    return int(match.group(1)) if match else None


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    """Not reachable from an intent; the journey opens the flow in SCORE directly."""
    return done()


def score(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order_id = str(slots.get("order_id") or "") or None
    value = parse_score(ctx)
    if value is None:
        if slots.get("asked_again"):
            return done(Reply("journey.feedback_skipped", order_id=order_id), understood=False)
        return StepResult(next_state=SCORE, effects=(Reply("journey.feedback_retry", order_id=order_id),),
                          slots={**slots, "asked_again": True}, expecting=Expecting.NUMBER, understood=False)
    record = UpdateOrder(order_id=order_id, changes={}, event_type="feedback", note=f"NPS {value}/10") if order_id else None
    effects: list[Any] = [record] if record else []
    if value >= 9:
        review_link = str(ctx.config.get("review_link") or "")
        effects.append(Reply("journey.feedback_promoter", vars={"review_link": review_link, "score": value},
                             order_id=order_id))
        return done(*effects)
    if value >= 7:
        effects.append(Reply("journey.feedback_passive", vars={"score": value}, order_id=order_id))
        return done(*effects)
    effects.append(Reply("journey.feedback_detractor", vars={"score": value}, order_id=order_id))
    effects.append(Escalate(reason="detractor", order_id=order_id, note=f"NPS {value}/10 after delivery"))
    return StepResult(next_state=HANDOFF, effects=tuple(effects))


FLOW = Flow(
    name="feedback",
    start=start,
    states={SCORE: State(step=score, expecting=Expecting.NUMBER, goes_to=(SCORE, END, HANDOFF),
                         description="waiting for a 0–10 score")},
    timeout=timedelta(days=2),
    description="NPS survey reply: record the score, review link for promoters, a person for detractors.",
)
