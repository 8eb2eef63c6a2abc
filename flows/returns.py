"""Returns and refunds: answer from the shop's return policy, collect the reason and a photo, escalate.

The policy text and window come only from the shop config (`returns.policy`,
`returns.window_days`); the bot never promises a refund itself. It collects
the reason and, optionally, a photo (media URLs on the message), then hands
the conversation to a person with that context (reason, photos, order).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flows.base import (
    END,
    HANDOFF,
    Escalate,
    Flow,
    FlowContext,
    OrderView,
    Reply,
    State,
    StepResult,
    UpdateOrder,
)
from flows.common import ANY_ANSWER, CHOOSE_ORDER, choose_step, is_skip, reask_which, select_order, yes_no
from intents import Expecting

ASK_REASON = "ask_reason"
ASK_PHOTO = "ask_photo"
IN_TRANSIT = {"placed", "confirmed", "packed", "shipped", "out_for_delivery", "delayed", "failed_attempt"}


def _policy(ctx: FlowContext) -> tuple[str, int]:
    section = ctx.config.get("returns", {})
    section = section if isinstance(section, Mapping) else {}
    return str(section.get("policy", "")), int(section.get("window_days", 0) or 0)


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    delivered = tuple(o for o in ctx.orders if o.status == "delivered")
    if not delivered:
        order = next((o for o in ctx.orders if o.status in IN_TRANSIT), ctx.orders[0])
        policy, window_days = _policy(ctx)
        return StepResult(next_state=END, effects=(Reply("returns.not_delivered",
                                                         {"order": order, "policy": policy, "window_days": window_days},
                                                         order_id=order.order_id),))
    return select_order(ctx, delivered, {}, begin)


def begin(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    policy, window_days = _policy(ctx)
    late = bool(window_days and order.delivered_at
                and ctx.today > (order.delivered_at.date() + timedelta(days=window_days)))
    problem = ctx.classification.entity("problem")
    if problem is not None and problem.value in ("wrong_item", "damaged"):
        # "You sent the wrong size": the message already says what is wrong; don't ask it again.
        return StepResult(next_state=ASK_PHOTO, effects=(Reply("returns.ask_photo", {"order": order},
                                                               order_id=order.order_id),),
                          slots={"order_id": order.order_id, "late": late, "reason": ctx.text.strip()[:500]},
                          expecting=Expecting.FREE_TEXT)
    return StepResult(
        next_state=ASK_REASON,
        effects=(Reply("returns.policy_ask_reason", {"order": order, "items": order.item_names, "policy": policy,
                                                     "late": late, "window_days": window_days},
                       order_id=order.order_id),),
        slots={"order_id": order.order_id, "late": late},
        expecting=Expecting.FREE_TEXT,
    )


def enter_after_delivery(order: OrderView) -> StepResult:
    """From WISMO's "delivered, anything wrong?" yes: go straight to the reason."""
    return StepResult(
        next_state=ASK_REASON,
        effects=(Reply("returns.whats_wrong", {"order": order}, order_id=order.order_id),),
        slots={"order_id": order.order_id, "late": False},
        expecting=Expecting.FREE_TEXT,
        flow="returns",
    )


def ask_reason(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    text = ctx.text.strip()
    if yes_no(ctx) == "no" and len(text.split()) <= 3:
        return StepResult(next_state=END, effects=(Reply("returns.no_return", {"order": order}, order_id=order.order_id),))
    if len(text) < 3 and not ctx.media_urls:
        return StepResult(next_state=ASK_REASON, effects=(Reply("returns.ask_reason_again", {"order": order},
                                                               order_id=order.order_id),),
                          slots=dict(slots), expecting=Expecting.FREE_TEXT, understood=False)
    reason = text[:500]
    if ctx.media_urls:
        return _escalate(order, reason, list(ctx.media_urls))
    return StepResult(next_state=ASK_PHOTO, effects=(Reply("returns.ask_photo", {"order": order}, order_id=order.order_id),),
                      slots={**dict(slots), "reason": reason}, expecting=Expecting.FREE_TEXT)


def ask_photo(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    reason = str(slots.get("reason", ""))
    text = ctx.text.strip()
    if not ctx.media_urls and text and not is_skip(text) and yes_no(ctx) is None:
        reason = f"{reason} / {text[:300]}"  # more detail instead of a photo
    return _escalate(order, reason, list(ctx.media_urls))


def _escalate(order: OrderView, reason: str, photos: list[str]) -> StepResult:
    note = f"return request: {reason}" + (f" | photos: {len(photos)}" if photos else " | no photo")
    return StepResult(next_state=HANDOFF, effects=(
        UpdateOrder(order.order_id, {"extra": {"return_reason": reason, "return_photos": photos}}),
        Reply("returns.escalated", {"order": order, "photo": bool(photos)}, order_id=order.order_id),
        Escalate(reason="return_request", order_id=order.order_id, note=note[:2000]),
    ))


def reprompt_reason(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    return StepResult(next_state=ASK_REASON, effects=(Reply("returns.whats_wrong", {"order": order}, order_id=order.order_id),),
                      slots=dict(slots), expecting=Expecting.FREE_TEXT)


def reprompt_photo(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    return StepResult(next_state=ASK_PHOTO, effects=(Reply("returns.ask_photo", {"order": order}, order_id=order.order_id),),
                      slots=dict(slots), expecting=Expecting.FREE_TEXT)


FLOW = Flow(
    name="returns",
    timeout=timedelta(hours=24),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE_ORDER, ASK_REASON),
    states={
        CHOOSE_ORDER: State(choose_step(begin), Expecting.CHOICE, goes_to=(ASK_REASON, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
        ASK_REASON: State(ask_reason, Expecting.FREE_TEXT, goes_to=(ASK_PHOTO, HANDOFF, END, ASK_REASON),
                          description="policy + what's wrong?", reprompt=reprompt_reason,
                          accepts=ANY_ANSWER),
        ASK_PHOTO: State(ask_photo, Expecting.FREE_TEXT, goes_to=(HANDOFF,), description="optional photo",
                         reprompt=reprompt_photo,
                         accepts=ANY_ANSWER),
    },
    intents=frozenset({"return_refund"}),
    description="Answer from the return policy, collect reason and photo, hand to a person.",
)
