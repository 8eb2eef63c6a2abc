"""Address clarification: ask only for the missing parts, read the whole address back, update on yes.

Starts when the customer sends a correction ("the flat number is 4B", "change
my address"), and proactively (see `flows.proactive`) when an order's
`address_status` is `needs_clarification`. It asks for a house/flat number
when the address has none and for a postal code when the one on file is
invalid for the country; floor, building and landmark are taken whenever the
customer gives them (a landmark is asked for, optionally, when missing).

Once the parcel is out for delivery (or later) the change is a request for a
person: escalated, never applied. The pure validation here
(`postal_code_valid`, `address_needs_clarification`) is also what the orders
API uses at order creation. Must never change an address without a yes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flows.base import (
    END,
    HANDOFF,
    Effect,
    EmitEvent,
    Escalate,
    Flow,
    FlowContext,
    OrderView,
    Reply,
    State,
    StepResult,
    UpdateOrder,
)
from flows.common import CHOOSE_ORDER, choose_step, is_skip, reask_which, select_order, yes_no
from intents import Expecting
from intents.address import LEADING_FLAT, find_flat_number, has_house_number, postal_code_valid

ASK_PART = "ask_part"
CONFIRM = "confirm"
PARTS = ("flat_number", "floor", "building", "landmark", "postal_code")
TOO_LATE = {"out_for_delivery", "failed_attempt", "delivered", "returned"}
CLOSED = {"cancelled", "cancel_requested"}

def address_needs_clarification(address: Mapping[str, Any]) -> bool:
    """An address with no house/flat number or an invalid postal code cannot be delivered reliably."""
    return not has_house_number(address) or not postal_code_valid(str(address.get("postal_code", "")),
                                                                  str(address.get("country", "IN")))


def missing_parts(address: Mapping[str, Any], parts: Mapping[str, Any]) -> list[str]:
    """The required parts still missing, in the order they are asked."""
    missing = []
    if not has_house_number(address) and not parts.get("flat_number"):
        missing.append("flat_number")
    code = str(parts.get("postal_code") or address.get("postal_code", ""))
    if not postal_code_valid(code, str(address.get("country", "IN"))):
        missing.append("postal_code")
    return missing


def compose(address: Mapping[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    """The shipping address with the customer's parts merged in (same keys as the order JSON)."""
    new = {key: address.get(key, "") for key in ("line1", "line2", "landmark", "city", "postal_code", "country")}
    if parts.get("flat_number"):
        base = LEADING_FLAT.sub("", str(new["line1"]))
        label = str(parts.get("flat_label", ""))
        new["line1"] = f"{label} {parts['flat_number']}".strip() + (f", {base}" if base else "")
    extra = []
    if parts.get("floor") is not None and parts.get("floor") != "":
        floor = int(parts["floor"])
        extra.append("Ground floor" if floor == 0 else f"Floor {floor}")
    if parts.get("building"):
        extra.append(str(parts["building"]))
    if extra:
        new["line2"] = ", ".join([*extra, *([str(new["line2"])] if new["line2"] else [])])
    if parts.get("landmark"):
        new["landmark"] = str(parts["landmark"])
    if parts.get("postal_code"):
        new["postal_code"] = str(parts["postal_code"]).upper()
    return new


def one_line(address: Mapping[str, Any]) -> str:
    city = " ".join(p for p in (str(address.get("city", "")), str(address.get("postal_code", ""))) if p)
    return ", ".join(str(p) for p in (address.get("line1"), address.get("line2"), address.get("landmark"), city) if p)


def _read_parts(ctx: FlowContext, asking: str | None, country: str) -> tuple[dict[str, Any], str | None]:
    """Parts found in the message (entities first, then the plain text for the part asked) and a problem key."""
    found: dict[str, Any] = {}
    for entity in ctx.classification.entities:
        if entity.type in PARTS and entity.type not in found:
            found[entity.type] = entity.value
    text = ctx.text.strip()
    if "flat_number" not in found:
        flat = find_flat_number(text, asked=asking == "flat_number")
        if flat:
            found["flat_number"] = flat
    if asking == "postal_code" and "postal_code" not in found and re.fullmatch(r"[A-Za-z0-9 -]{3,10}", text) \
            and re.search(r"\d", text):
        found["postal_code"] = text
    if asking == "landmark" and "landmark" not in found and len(text) >= 3 and not is_skip(text) and yes_no(ctx) is None:
        found["landmark"] = text[:120]
    if "flat_number" in found:
        # Keep the customer's own word for it ("Flat 4B", "House 42", or just "42").
        label = re.search(r"\b(flat|apartment|apt|house|h\.?\s?no|casa|piso|ghar|makan)\b", text, re.I)
        word = label.group(1).lower() if label else ""
        found["flat_label"] = "Flat" if word in {"flat", "apartment", "apt", "piso"} else "House" if word else ""
    if "postal_code" in found and not postal_code_valid(str(found["postal_code"]), country):
        return {k: v for k, v in found.items() if k != "postal_code"}, "address.bad_postal_code"
    return found, None


def _whole_address(ctx: FlowContext) -> tuple[dict[str, str] | None, bool]:
    """A complete new address in the message (to replace the old one whole), and whether one was
    plainly given but could not be read with confidence (then a person takes it)."""
    found = ctx.classification.entity("new_address")
    if found is not None and isinstance(found.value, Mapping):
        return {k: str(v) for k, v in found.value.items()}, False
    return None, ctx.classification.entity("new_address_unsure") is not None


def _replacement(order: OrderView, whole: Mapping[str, str]) -> dict[str, Any]:
    """The new shipping address: every part from the customer's message, none from the old address."""
    return {"line1": whole.get("line1", ""), "line2": whole.get("line2", ""), "landmark": whole.get("landmark", ""),
            "city": whole.get("city", ""), "postal_code": whole.get("postal_code", "").upper(),
            "country": str(order.shipping_address.get("country", "IN"))}


def _new_address_step(order: OrderView, ctx: FlowContext, slots: Mapping[str, Any]) -> StepResult | None:
    """Read a whole new address back (or hand an unclear one to a person); None when there is none."""
    whole, unsure = _whole_address(ctx)
    if whole is not None:
        new = _replacement(order, whole)
        if not postal_code_valid(new["postal_code"], new["country"]):
            unsure = True
        else:
            return StepResult(
                next_state=CONFIRM,
                effects=(Reply("address.read_back_new", {"order": order, "address": one_line(new)},
                               order_id=order.order_id),),
                slots={"order_id": order.order_id, "new_address": new, "asked": list(slots.get("asked", []))},
                expecting=Expecting.YES_NO,
            )
    if unsure:
        # A whole new address is not something to guess at, nor to merge into the old one: a person checks it.
        return StepResult(next_state=HANDOFF, effects=(
            Reply("address.new_address_to_agent", {"order": order}, order_id=order.order_id),
            Escalate(reason="new_address", order_id=order.order_id, note=f"new address: {ctx.text[:500]}"),
        ))
    return None


def _eligible(ctx: FlowContext) -> tuple[OrderView, ...]:
    return tuple(o for o in ctx.orders if o.status not in CLOSED | {"returned"})


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    candidates = _eligible(ctx)
    if not candidates:
        return StepResult(next_state=END, effects=(Reply("address.nothing_to_change"),))
    # Prefer the orders whose address actually needs fixing.
    unclear = tuple(o for o in candidates if o.address_status == "needs_clarification")
    return select_order(ctx, unclear if len(unclear) == 1 else candidates, {"customer_started": True}, begin)


def begin(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if order.status in TOO_LATE:
        return StepResult(next_state=HANDOFF, effects=(
            Reply("address.too_late", {"order": order}, order_id=order.order_id),
            Escalate(reason="address_change_too_late", order_id=order.order_id,
                     note=f"address change requested while {order.status}: {ctx.text[:300]}"),
        ))
    if slots.get("customer_started"):
        whole = _new_address_step(order, ctx, slots)
        if whole is not None:
            return whole
    country = str(order.shipping_address.get("country", "IN"))
    parts, problem = _read_parts(ctx, None, country) if slots.get("customer_started") else ({}, None)
    return _next(order, {"order_id": order.order_id, "parts": parts}, ctx, problem=problem)


def ask_first(order: OrderView) -> StepResult:
    """The proactive opening: ask for the first missing part of a `needs_clarification` address."""
    return _next(order, {"order_id": order.order_id, "parts": {}, "proactive": True}, None)


def _next(order: OrderView, slots: dict[str, Any], ctx: FlowContext | None, *, problem: str | None = None,
          understood: bool = True) -> StepResult:
    parts = dict(slots.get("parts", {}))
    missing = missing_parts(order.shipping_address, parts)
    asked = list(slots.get("asked", []))
    if problem is not None:
        return _ask(order, {**slots, "parts": parts}, "postal_code", template=problem, understood=False)
    if missing:
        return _ask(order, {**slots, "parts": parts}, missing[0], understood=understood)
    # The optional landmark is asked only in the proactive clarification, never after a customer's own fix.
    wants_landmark = (bool(slots.get("proactive")) and not order.shipping_address.get("landmark")
                      and not parts.get("landmark") and "landmark" not in asked)
    if wants_landmark:
        return _ask(order, {**slots, "parts": parts}, "landmark", understood=understood)
    if not parts:
        return _ask(order, {**slots, "parts": parts}, "any", understood=understood)
    new = compose(order.shipping_address, parts)
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("address.read_back", {"order": order, "address": one_line(new)}, order_id=order.order_id),),
        slots={**slots, "parts": parts},
        expecting=Expecting.YES_NO,
        understood=understood,
    )


def _ask(order: OrderView, slots: Mapping[str, Any], part: str, *, template: str | None = None,
         understood: bool = True) -> StepResult:
    asked = list(dict.fromkeys([*slots.get("asked", []), part]))
    return StepResult(
        next_state=ASK_PART,
        effects=(Reply(template or f"address.ask_{part}", {"order": order,
                                                           "address": one_line(compose(order.shipping_address,
                                                                                       slots.get("parts", {})))},
                       order_id=order.order_id),),
        slots={**dict(slots), "asking": part, "asked": asked},
        expecting=Expecting.FREE_TEXT if part == "landmark" else Expecting.ADDRESS_PART,
        understood=understood,
    )


def ask_part(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    whole = _new_address_step(order, ctx, slots)
    if whole is not None:
        return whole
    asking = slots.get("asking")
    found, problem = _read_parts(ctx, asking, str(order.shipping_address.get("country", "IN")))
    parts = {**dict(slots.get("parts", {})), **found}
    new_slots = {**dict(slots), "parts": parts}
    if problem is not None:
        return _next(order, new_slots, ctx, problem=problem)
    if asking == "landmark" and not found:
        if is_skip(ctx.text) or yes_no(ctx) == "no":
            return _next(order, new_slots, ctx)  # the landmark is optional
        return _ask(order, new_slots, "landmark", understood=False)
    if not found:
        if asking == "any" and len(ctx.text.split()) >= 4:
            # A whole new address is not something to guess at: a person checks it.
            return StepResult(next_state=HANDOFF, effects=(
                Reply("address.new_address_to_agent", {"order": order}, order_id=order.order_id),
                Escalate(reason="new_address", order_id=order.order_id, note=f"new address: {ctx.text[:500]}"),
            ))
        return _ask(order, new_slots, str(asking or "any"), template="address.didnt_get_it", understood=False)
    return _next(order, new_slots, ctx)


def confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    whole = _new_address_step(order, ctx, slots)
    if whole is not None:
        return whole
    if slots.get("new_address"):
        return _confirm_new(order, slots, ctx)
    found, problem = _read_parts(ctx, None, str(order.shipping_address.get("country", "IN")))
    parts = {**dict(slots.get("parts", {})), **found}
    if found or problem:
        # A correction ("no, it's flat 5C"): merge it and read the address back again.
        return _next(order, {**dict(slots), "parts": parts}, ctx, problem=problem)
    answer = yes_no(ctx)
    if answer == "yes":
        new = compose(order.shipping_address, parts)
        return StepResult(next_state=END, effects=(
            UpdateOrder(order.order_id, {"shipping_address": new, "address_status": "updated"},
                        event_type="address_updated", note="customer clarified the address"),
            EmitEvent("address.updated", order.order_id, {"shipping_address": new, "changed": sorted(k for k in parts if k in PARTS)}),
            Reply("address.done", {"order": order, "address": one_line(new)}, order_id=order.order_id),
        ))
    if answer == "no":
        return _ask(order, slots, "any", template="address.what_to_fix")
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("address.read_back_again", {"order": order, "address": one_line(compose(order.shipping_address, parts))},
                       order_id=order.order_id),),
        slots=dict(slots), expecting=Expecting.YES_NO, understood=False,
    )


def _confirm_new(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    """The answer to the read-back of a whole new address: yes saves exactly what was read back."""
    new = {k: str(v) for k, v in dict(slots["new_address"]).items()}
    answer = yes_no(ctx)
    if answer == "yes":
        return StepResult(next_state=END, effects=replaced(order, new, note="customer gave a new address"))
    if answer == "no":
        return _ask(order, {"order_id": order.order_id, "parts": {}}, "any", template="address.send_whole_address")
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("address.read_back_again", {"order": order, "address": one_line(new)}, order_id=order.order_id),),
        slots=dict(slots), expecting=Expecting.YES_NO, understood=False,
    )


def replaced(order: OrderView, new: Mapping[str, str], *, note: str) -> tuple[Effect, ...]:
    """What a confirmed whole new address does (the customer's yes to the read-back, or an agent's
    action): the order's address is replaced, logistics hears `address.updated`, the customer is told."""
    address = dict(new)
    return (
        UpdateOrder(order.order_id, {"shipping_address": address, "address_status": "updated"},
                    event_type="address_updated", note=note),
        EmitEvent("address.updated", order.order_id, {"shipping_address": address, "replaced": True,
                                                      "changed": ["city", "landmark", "line1", "line2", "postal_code"]}),
        Reply("address.done", {"order": order, "address": one_line(address)}, order_id=order.order_id),
    )


def can_replace(order: OrderView) -> bool:
    """Whether a person may still replace the order's address (the bot itself stops at dispatch)."""
    return order.status not in CLOSED | {"returned", "delivered"}


def new_address_problem(order: OrderView, whole: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """A whole new address typed outright (by an agent), as the order will hold it, and why it cannot
    be saved (None when it can): the order must still be deliverable, the street and city given, the
    postal code valid for the country."""
    new = _replacement(order, whole)
    if not can_replace(order):
        return new, "the order is closed (delivered, returned or cancelled)"
    if not new["line1"].strip() or not new["city"].strip():
        return new, "the street address and the city are required"
    if not postal_code_valid(new["postal_code"], new["country"]):
        return new, f"the postal code is not valid for {new['country']}"
    return new, None


def reprompt_part(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    return _ask(order, slots, str(slots.get("asking") or "any"))


def reprompt_confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    if slots.get("new_address"):
        return StepResult(
            next_state=CONFIRM,
            effects=(Reply("address.read_back_new", {"order": order, "address": one_line(dict(slots["new_address"]))},
                           order_id=order.order_id),),
            slots=dict(slots), expecting=Expecting.YES_NO,
        )
    return _next(order, dict(slots), ctx)


FLOW = Flow(
    name="address",
    timeout=timedelta(hours=24),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(CHOOSE_ORDER, ASK_PART, CONFIRM, HANDOFF, END),
    states={
        CHOOSE_ORDER: State(choose_step(begin), Expecting.CHOICE, goes_to=(ASK_PART, CONFIRM, HANDOFF, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
        ASK_PART: State(ask_part, Expecting.ADDRESS_PART, goes_to=(ASK_PART, CONFIRM, HANDOFF),
                        description="ask one missing part (flat no., PIN, landmark)", reprompt=reprompt_part),
        CONFIRM: State(confirm, Expecting.YES_NO, goes_to=(END, ASK_PART, CONFIRM),
                       description="read the whole address back", reprompt=reprompt_confirm),
    },
    intents=frozenset({"change_address"}),
    description="Clarify or correct the delivery address, asking only for what is missing.",
)
