"""Address clarification, pure: validation per country, only the missing parts, read-back, escalation."""

from __future__ import annotations

from flows import address
from flows.base import END, HANDOFF, EmitEvent, Escalate, Reply, UpdateOrder
from intents import Intent
from tests.flows.support import ctx, order

NO_NUMBER = {"line1": "Main Street", "line2": "", "landmark": "", "city": "Springfield", "postal_code": "9999",
             "country": "US"}


def test_postal_codes_are_validated_per_country() -> None:
    assert address.postal_code_valid("560001", "IN") and not address.postal_code_valid("056001", "IN")
    assert address.postal_code_valid("62704", "US") and address.postal_code_valid("62704-1234", "US")
    assert not address.postal_code_valid("9999", "US")
    assert address.postal_code_valid("SW1A 1AA", "GB") and not address.postal_code_valid("12345", "GB")
    assert address.postal_code_valid("28013", "ES") and not address.postal_code_valid("", "FR")


def test_only_the_missing_parts_are_asked() -> None:
    assert address.missing_parts(NO_NUMBER, {}) == ["flat_number", "postal_code"]
    assert address.missing_parts(NO_NUMBER, {"flat_number": "42"}) == ["postal_code"]
    assert address.missing_parts({**NO_NUMBER, "line1": "5 Main Street", "postal_code": "62704"}, {}) == []
    assert address.address_needs_clarification(NO_NUMBER)


def test_proactive_opening_asks_for_the_house_number_first() -> None:
    result = address.ask_first(order(shipping_address=NO_NUMBER, address_status="needs_clarification"))
    reply = result.effects[0]
    assert isinstance(reply, Reply) and reply.template == "address.ask_flat_number"
    assert result.next_state == address.ASK_PART and result.slots["asking"] == "flat_number"


def test_a_correction_is_read_back_whole_then_saved_on_yes() -> None:
    o = order(status="confirmed", shipping_address={**NO_NUMBER, "line1": "Sai Residency", "postal_code": "560001",
                                                     "country": "IN", "city": "Bengaluru"})
    first = address.start({}, ctx("the flat number is 4B", Intent.CHANGE_ADDRESS, orders=(o,)))
    assert first.next_state == address.CONFIRM
    reply = first.effects[0]
    assert isinstance(reply, Reply) and reply.vars["address"] == "Flat 4B, Sai Residency, Bengaluru 560001"
    done = address.confirm(dict(first.slots), ctx("yes", Intent.AFFIRM, ("yes_no", "yes"), orders=(o,)))
    assert done.next_state == END
    update = next(e for e in done.effects if isinstance(e, UpdateOrder))
    assert update.changes["address_status"] == "updated"
    assert update.changes["shipping_address"]["line1"] == "Flat 4B, Sai Residency"
    event = next(e for e in done.effects if isinstance(e, EmitEvent))
    assert event.type == "address.updated" and event.data["changed"] == ["flat_number"]


def test_an_invalid_postal_code_is_refused() -> None:
    o = order(status="confirmed", shipping_address={**NO_NUMBER, "line1": "12 MG Road", "postal_code": "56001",
                                                     "country": "IN"})
    slots = {"order_id": "A1001", "parts": {}, "asking": "postal_code"}
    result = address.ask_part(slots, ctx("012345", orders=(o,)))
    reply = result.effects[0]
    assert isinstance(reply, Reply) and reply.template == "address.bad_postal_code"
    assert not result.understood and "postal_code" not in result.slots["parts"]


def test_out_for_delivery_goes_to_a_person() -> None:
    result = address.start({}, ctx("flat 7C", Intent.CHANGE_ADDRESS, ("flat_number", "7C"),
                                   orders=(order(status="out_for_delivery"),)))
    assert result.next_state == HANDOFF
    assert any(isinstance(e, Escalate) for e in result.effects)
    assert not any(isinstance(e, UpdateOrder) for e in result.effects)
