"""Proactive address clarification: an address the courier cannot use gets a
question for its missing parts, within the contact policy, and the customer's
answer lands in the address flow."""

from __future__ import annotations

import uuid

from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Conversation, Order
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit

NO_HOUSE_NUMBER = {"line1": "MG Road", "line2": "", "city": "Bengaluru", "postal_code": "560001"}


def _say(kit: Kit, text: str) -> list[str]:
    handled = kit.service.handle_inbound(InboundMessage(channel="sms", text=text, phone="+919812345678",
                                                        provider_message_id=f"SM{uuid.uuid4().hex}",
                                                        received_at=kit.clock()))
    return [m.text for m in handled.replies]


def test_new_order_with_no_house_number_is_asked_and_fixed(kit: Kit) -> None:
    kit.post_order(shipping_address=NO_HOUSE_NUMBER)
    kit.run_until(ist(23, 10, 5))
    asked = [s for s in kit.recorder.sent if s.kind.startswith("address.")]
    assert len(asked) == 1 and "flat" in asked[0].text.lower()
    with kit.service.db.session() as session:
        assert session.exec(select(Conversation)).one().flow == "address"
    replies = _say(kit, "flat 4B")
    assert replies
    while not any("MG Road" in r and "4B" in r for r in replies):  # optional parts (landmark) may be asked first
        replies = _say(kit, "skip")
        assert replies
    _say(kit, "yes")
    order = kit.client.get("/api/orders/A1001", headers=kit.auth).json()
    assert order["address_status"] == "updated"
    assert "4B" in order["shipping_address"]["line1"]


def test_the_question_waits_for_the_end_of_quiet_hours(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 22, 30))
    with kit.client:
        kit.post_order(shipping_address=NO_HOUSE_NUMBER)
        kit.run_until(ist(24, 7, 55))
        assert not [s for s in kit.recorder.sent if s.kind.startswith("address.")]
        kit.run_until(ist(24, 8, 15))
        asked = [s for s in kit.recorder.sent if s.kind.startswith("address.")]
        assert len(asked) == 1 and ist(24, 8) <= asked[0].at <= ist(24, 8, 15)


def test_cod_question_goes_first_and_the_address_question_follows_the_yes(kit: Kit) -> None:
    kit.post_order(payment_method="cod", shipping_address=NO_HOUSE_NUMBER)
    kit.run_until(ist(23, 10, 5))
    assert [s.kind for s in kit.recorder.sent] == ["journey.order_confirmed_cod"]
    replies = _say(kit, "yes")
    assert len(replies) == 2 and "flat" in replies[1].lower()
    with kit.service.db.session() as session:
        assert session.exec(select(Order)).one().cod_status == "confirmed"
        assert session.exec(select(Conversation)).one().flow == "address"


def test_a_good_address_is_not_questioned_and_a_repeat_post_asks_once(kit: Kit) -> None:
    kit.post_order()
    kit.post_order(order_id="A1002", shipping_address=NO_HOUSE_NUMBER)
    kit.post_order(order_id="A1002", shipping_address=NO_HOUSE_NUMBER)
    kit.run_until(ist(23, 10, 5))
    asked = [s for s in kit.recorder.sent if s.kind.startswith("address.")]
    assert len(asked) == 1 and "A1002" in asked[0].text
