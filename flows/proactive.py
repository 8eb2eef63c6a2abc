"""Proactive openings: the first message of a flow the *bot* starts (COD ask, address clarification).

The journeys send these as outbound messages; the customer's reply ("YES",
"flat 4B") must then land in the right state of the right flow. This module
only decides *what* to ask and *which state* waits for the answer, as a pure
`StepResult` with `flow` set; `bot.store.conversations.open_proactive` (or the lower-level
`bot.store.conversations.open_flow`) applies it to a conversation. It never sends anything.
"""

from __future__ import annotations

from flows import address, cod
from flows.base import OrderView, StepResult
from intents.errors import DoorstepError

KINDS = ("cod_confirmation", "address_clarification")


class NotApplicable(DoorstepError, ValueError):
    """The order does not need this opening (e.g. COD already confirmed)."""


def open_flow(kind: str, order: OrderView) -> StepResult:
    """The opening question for `kind` about `order`, with `flow`, `next_state`, slots and expecting set.

    - "cod_confirmation": needs `payment_method == "cod"` and `cod_status == "pending"`;
      asks "reply YES to confirm or NO to cancel" naming items and total.
    - "address_clarification": asks for the first missing part (house/flat number,
      postal code, then an optional landmark) of an address that needs it.
    Raises NotApplicable when the order does not qualify, ValueError for an unknown kind.
    """
    if kind == "cod_confirmation":
        if order.payment_method != "cod" or order.cod_status != "pending" or not order.is_open:
            raise NotApplicable(f"order {order.order_id} has no pending cash-on-delivery confirmation")
        result = cod.ask(order)
        flow = cod.FLOW.name
    elif kind == "address_clarification":
        if order.status in address.TOO_LATE | address.CLOSED:
            raise NotApplicable(f"order {order.order_id} is {order.status}; its address can no longer be changed by the bot")
        result = address.ask_first(order)
        flow = address.FLOW.name
    else:
        raise ValueError(f"unknown proactive flow {kind!r} (known: {', '.join(KINDS)})")
    return StepResult(next_state=result.next_state, effects=result.effects, slots=result.slots,
                      expecting=result.expecting, choices=result.choices, flow=flow)
