"""COD confirmation, cancel and returns, pure: the right effects for yes, no, reasons and photos."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows import cancel, cod, proactive, returns
from flows.base import END, HANDOFF, EmitEvent, Escalate, Reply, UpdateOrder
from intents import Intent
from tests.flows.support import ctx, order

COD = order(status="confirmed", payment_method="cod", cod_status="pending")


def test_cod_ask_names_items_and_total_with_yes_no_buttons() -> None:
    result = proactive.open_flow("cod_confirmation", COD)
    assert result.flow == "cod" and result.next_state == cod.CONFIRM
    reply = result.effects[0]
    assert isinstance(reply, Reply) and reply.template == "cod.ask"
    assert reply.vars["items"] == "T-shirt" and reply.vars["order"].total == "499.00"
    assert [p for _, p in reply.buttons] == ["/btn:affirm:yes", "/btn:deny:no"]


def test_cod_yes_confirms_and_emits() -> None:
    result = cod.confirm({"order_id": "A1001"}, ctx("YES", Intent.AFFIRM, ("yes_no", "yes"), orders=(COD,)))
    update = next(e for e in result.effects if isinstance(e, UpdateOrder))
    assert update.changes == {"cod_status": "confirmed"}
    assert [e.type for e in result.effects if isinstance(e, EmitEvent)] == ["cod.confirmed"]


def test_cod_no_asks_the_reason_then_cancels_with_it() -> None:
    asked = cod.confirm({"order_id": "A1001"}, ctx("NO", Intent.DENY, ("yes_no", "no"), orders=(COD,)))
    assert asked.next_state == cod.REASON
    reply = asked.effects[0]
    assert isinstance(reply, Reply) and len(reply.buttons) == 4
    done = cod.reason(dict(asked.slots), ctx("/btn:choice:3", Intent.CHOICE, ("choice", 3), orders=(COD,)))
    update = next(e for e in done.effects if isinstance(e, UpdateOrder))
    assert update.changes["cod_status"] == "cancelled" and update.changes["status"] == "cancelled"
    event = next(e for e in done.effects if isinstance(e, EmitEvent))
    assert event.type == "cod.cancelled" and event.data == {"reason": "delivery_too_late"}


def test_proactive_cod_refuses_an_order_without_pending_cod() -> None:
    with pytest.raises(proactive.NotApplicable):
        proactive.open_flow("cod_confirmation", order(payment_method="prepaid"))
    with pytest.raises(ValueError, match="unknown proactive flow"):
        proactive.open_flow("nps", COD)


def test_cancel_prepaid_becomes_a_request_and_cod_is_cancelled() -> None:
    prepaid = order(status="confirmed")
    result = cancel.confirm({"order_id": "A1001"}, ctx("yes", Intent.AFFIRM, ("yes_no", "yes"), orders=(prepaid,)))
    assert next(e for e in result.effects if isinstance(e, UpdateOrder)).changes == {"status": "cancel_requested"}
    assert [e.type for e in result.effects if isinstance(e, EmitEvent)] == ["order.cancel_requested"]
    result = cancel.confirm({"order_id": "A1001"}, ctx("yes", Intent.AFFIRM, ("yes_no", "yes"), orders=(COD,)))
    assert [e.type for e in result.effects if isinstance(e, EmitEvent)] == ["cod.cancelled"]


def test_cancel_after_shipping_only_explains() -> None:
    result = cancel.start({}, ctx("cancel", Intent.CANCEL_ORDER, orders=(order(status="shipped"),)))
    assert result.next_state == END
    assert [type(e) for e in result.effects] == [Reply]
    assert isinstance(result.effects[0], Reply) and result.effects[0].template == "cancel.after_shipping"


def test_returns_quote_the_configured_policy_and_escalate_with_the_photo() -> None:
    delivered = order(status="delivered", delivered_at=datetime(2026, 11, 21, 10, tzinfo=UTC))
    asked = returns.start({}, ctx("I want to return it", Intent.RETURN_REFUND, orders=(delivered,)))
    reply = asked.effects[0]
    assert isinstance(reply, Reply) and reply.vars["policy"] == "Unused items can be returned within 7 days."
    done = returns.ask_reason(dict(asked.slots), ctx("it is torn", orders=(delivered,), media=("https://m/1.jpg",)))
    assert done.next_state == HANDOFF
    escalation = next(e for e in done.effects if isinstance(e, Escalate))
    assert escalation.reason == "return_request" and "it is torn" in escalation.note and "photos: 1" in escalation.note
