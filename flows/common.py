"""Small pure helpers every flow shares: reading yes/no, picking an order, restarting.

Pure functions of a `FlowContext`; nothing here touches the database, the
clock or a provider. Flows use entities first (what the classifier extracted
in the context of the open question) and fall back to plain text, so they
stay robust when the intent label is off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flows.base import END, FlowContext, OrderView, Reply, StepResult
from intents import Expecting
from intents.text import contains_word

CHOOSE_ORDER = "choose_order"
SURE = 0.9
# For states that take any free answer (a reason, a landmark): every intent but a request for a person.
ANY_ANSWER = frozenset({"wismo", "reschedule", "change_address", "cod_confirm", "cancel_order", "return_refund",
                        "greet", "thanks", "opt_out"}) - {"opt_out"}

_RESTART = re.compile(
    r"^\s*(?:let'?s\s+)?(?:start\s+(?:over|again)|restart|reset|begin\s+again|from\s+the\s+(?:start|beginning)|"
    r"empezar\s+de\s+nuevo|empecemos\s+de\s+nuevo|volver\s+a\s+empezar|de\s+nuevo|"
    r"shuru\s+se|phir\s+se\s+shuru(?:\s+karo)?|dobara\s+shuru(?:\s+karo)?)\s*(?:please|pls|por\s+favor|karo)?\s*[.!]*\s*$",
    re.IGNORECASE,
)
_SKIP = re.compile(r"^\s*(?:skip|no photo|none|nothing|nahi|nahin|no hay|ninguna|omitir|saltar|no)\s*[.!]*\s*$", re.IGNORECASE)


def is_restart(text: str) -> bool:
    """"start over" and its Spanish/Hinglish forms (the whole message, nothing else)."""
    return bool(_RESTART.match(text))


def is_skip(text: str) -> bool:
    return bool(_SKIP.match(text))


def yes_no(ctx: FlowContext) -> str | None:
    """"yes", "no" or None: the yes/no entity first, then the intent (affirm/deny, a confirming cod_confirm)."""
    entity = ctx.classification.entity("yes_no")
    if entity is not None and entity.value in ("yes", "no"):
        return str(entity.value)
    payload = ctx.classification.entity("payload")
    if payload is not None and str(payload.value) in ("yes", "no"):
        return str(payload.value)
    # A yes changes an order, so it must be a yes the customer wrote (a word, an emoji, a
    # button): the model's `affirm` alone is never enough ("why" and "😳" once scored
    # 0.99). A model `deny` only when it is sure: saying no changes nothing.
    if ctx.classification.confidence >= SURE and ctx.intent.value == "deny":
        return "no"
    return None


def same_order(ctx: FlowContext, order_id: str | None) -> OrderView | None:
    return ctx.order(order_id) if order_id else None


def pick_order(ctx: FlowContext, candidates: tuple[OrderView, ...]) -> OrderView | None:
    """Which of `candidates` the customer means: a 1-based choice, an order id, or an item name."""
    choice = ctx.classification.entity("choice")
    if choice is not None and isinstance(choice.value, int) and 1 <= choice.value <= len(candidates):
        return candidates[choice.value - 1]
    lowered = ctx.text.lower().strip()
    if lowered.isdigit() and 1 <= int(lowered) <= len(candidates):
        return candidates[int(lowered) - 1]
    for order in candidates:
        if contains_word(lowered, order.order_id.lower()):
            return order
    matches = [o for o in candidates
               if any(str(i.get("name", "")).lower() in lowered for i in o.items if i.get("name"))]
    return matches[0] if len(matches) == 1 else None


def named_order(ctx: FlowContext, candidates: tuple[OrderView, ...]) -> OrderView | None:
    """The order the message names by id (`order_ref` entity or the id in the text), if any."""
    ref = ctx.classification.entity("order_ref")
    if ref is not None:
        found = next((o for o in candidates if o.order_id.lower() == str(ref.value).lower().lstrip("#")), None)
        if found is not None:
            return found
    lowered = ctx.text.lower()
    for order in candidates:
        if contains_word(lowered, order.order_id.lower()):
            return order
    # "where are my headphones": an item name that only one candidate has.
    by_item = [o for o in candidates if any(
        contains_word(lowered, str(i.get("name", "")).lower()) for i in o.items if i.get("name"))]
    return by_item[0] if len(by_item) == 1 and len(candidates) > 1 else None


def ask_which(candidates: tuple[OrderView, ...], slots: Mapping[str, Any], *, again: bool = False) -> StepResult:
    """List `candidates` (oldest first) and wait for the customer's pick."""
    return StepResult(
        next_state=CHOOSE_ORDER,
        effects=(Reply("core.which_order_again" if again else "core.which_order", {"orders": candidates},
                       buttons=tuple((f"{o.order_id} {o.item_names}".strip(), f"/btn:choice:{i}")
                                     for i, o in enumerate(candidates, start=1))),),
        slots={**dict(slots), "candidates": [o.order_id for o in candidates]},
        expecting=Expecting.CHOICE,
        choices=tuple(f"{o.order_id} {o.item_names}" for o in candidates),
        understood=not again,
    )


def foreign_ref(ctx: FlowContext) -> str | None:
    """An order id the message names that is none of this customer's orders (nor their tracking numbers)."""
    ref = ctx.classification.entity("order_ref")
    if ref is None:
        return None
    value = str(ref.value).lower().lstrip("#")
    mine = {o.order_id.lower() for o in ctx.orders} | {str(o.tracking_number or "").lower() for o in ctx.orders}
    return None if value in mine else str(ref.value).lstrip("#")


def select_order(ctx: FlowContext, candidates: tuple[OrderView, ...], slots: Mapping[str, Any],
                 begin: Callable[[OrderView, Mapping[str, Any], FlowContext], StepResult]) -> StepResult:
    """Start with the one candidate, the one the message names, or ask which (oldest first).

    An order id that is not one of this customer's orders is never answered with another order:
    the reply says it was not found for this number (and never whether it exists)."""
    unknown = foreign_ref(ctx)
    if unknown is not None:
        return StepResult(next_state=END, effects=(Reply("core.order_not_found_for_you",
                                                         {"ref": unknown[:20], "orders": ctx.orders}),))
    named = named_order(ctx, candidates)
    if named is not None:
        return begin(named, slots, ctx)
    # "Can you deliver it on Friday" right after talking about A1003: "it" is A1003. Every change
    # is read back naming the order, so a wrong default costs one "no", never a wrong change.
    recent = next((o for o in candidates if o.order_id == ctx.last_order_id), None)
    if recent is not None:
        return begin(recent, slots, ctx)
    if len(candidates) == 1:
        return begin(candidates[0], slots, ctx)
    return ask_which(tuple(sorted(candidates, key=_age)), slots)


def choose_step(begin: Callable[[OrderView, Mapping[str, Any], FlowContext], StepResult]
                ) -> Callable[[Mapping[str, Any], FlowContext], StepResult]:
    """The `choose_order` state of a flow: read the pick, then `begin` with that order."""

    def choose(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
        candidates = tuple(o for o in (ctx.order(i) for i in slots.get("candidates", [])) if o is not None)
        picked = pick_order(ctx, candidates)
        rest = {k: v for k, v in slots.items() if k != "candidates"}
        if picked is None:
            return ask_which(candidates, rest, again=True)
        return begin(picked, rest, ctx)

    return choose


def reask_which(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    candidates = tuple(o for o in (ctx.order(i) for i in slots.get("candidates", [])) if o is not None)
    rest = {k: v for k, v in slots.items() if k != "candidates"}
    return ask_which(candidates, rest)


def _age(order: OrderView) -> tuple[str, str]:
    return (order.created_at.isoformat() if order.created_at else "", order.order_id)


def with_slots(result: StepResult, **slots: Any) -> StepResult:
    return StepResult(next_state=result.next_state, effects=result.effects, slots={**dict(result.slots), **slots},
                      expecting=result.expecting, choices=result.choices, understood=result.understood,
                      flow=result.flow)


def not_understood(result: StepResult) -> StepResult:
    return StepResult(next_state=result.next_state, effects=result.effects, slots=result.slots,
                      expecting=result.expecting, choices=result.choices, understood=False, flow=result.flow)
