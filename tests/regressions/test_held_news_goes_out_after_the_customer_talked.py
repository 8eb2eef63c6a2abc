"""Regression: an order confirmation held by quiet hours still went out the next
morning after the customer had already talked to the bot about that order.

News about an order still waiting to go out is cancelled once the bot has
talked with the customer about that order (the message log says why); news
about another order, and a question still waiting for its answer, stay.
"""

from __future__ import annotations

import uuid
from typing import Any

from bot.core.channels import InboundMessage
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit


def _say(kit: Kit, text: str) -> list[str]:
    handled = kit.service.handle_inbound(InboundMessage(
        channel="sms", text=text, phone="+919812345678", provider_message_id=f"SM{uuid.uuid4().hex}",
        received_at=kit.clock()))
    return [m.text for m in handled.replies]


def _journey(kit: Kit, order_id: str, journey: str) -> dict[str, Any]:
    return next(m for m in kit.log(order_id) if m["journey"] == journey)


def test_news_held_overnight_is_cancelled_once_the_customer_asked_about_the_order(
        settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 22, 30))
    with kit.client:
        kit.post_order()  # the confirmation waits for 08:00
        kit.clock.set(ist(23, 22, 45))
        kit.event("A1001", "shipped")  # and so does the shipping news
        assert [m["status"] for m in kit.log("A1001")] == ["scheduled", "scheduled"]
        kit.clock.set(ist(23, 23))
        replies = _say(kit, "where is my order?")
        assert len(replies) == 1 and "A1001" in replies[0]
        kit.run_until(ist(24, 9))
        assert [s.kind for s in kit.recorder.sent if s.kind.startswith("journey.")] == []
        for journey in ("order_confirmed", "shipped"):
            entry = _journey(kit, "A1001", journey)
            assert entry["status"] == "cancelled"
            assert "talked to the bot about this order" in entry["error"]
    kit.service.db.dispose()


def test_news_about_another_order_still_goes_out(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))
    with kit.client:
        kit.post_order()
        kit.run_until(kit.clock())
        kit.clock.set(ist(23, 22, 30))
        kit.post_order(order_id="B2002", tracking_number="DL456")  # held for 08:00
        kit.clock.set(ist(23, 23))
        replies = _say(kit, "where is order A1001?")
        assert replies and "A1001" in replies[0] and "B2002" not in replies[0]
        kit.run_until(ist(24, 9))
        assert _journey(kit, "B2002", "order_confirmed")["status"] == "sent"
        assert any("B2002" in s.text for s in kit.recorder.sent if s.kind == "journey.order_confirmed")
    kit.service.db.dispose()


def test_an_answered_cod_question_held_overnight_is_not_asked_again(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 22, 30))
    with kit.client:
        kit.post_order(payment_method="cod")  # "reply YES to confirm" waits for 08:00
        kit.clock.set(ist(23, 23))
        assert _say(kit, "yes")  # the customer saw the order in the shop and confirms at once
        kit.run_until(ist(24, 12))
        question = _journey(kit, "A1001", "order_confirmed")
        assert question["status"] == "cancelled" and "talked to the bot" in question["error"]
        assert [s.kind for s in kit.recorder.sent if s.kind.startswith("journey.")] == []
    kit.service.db.dispose()


def test_an_unanswered_cod_question_still_goes_out(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 22, 30))
    with kit.client:
        kit.post_order(payment_method="cod")
        kit.clock.set(ist(23, 23))
        assert _say(kit, "where is my order?")
        assert _journey(kit, "A1001", "order_confirmed")["status"] == "scheduled"
        kit.run_until(ist(24, 8, 15))
        assert "journey.order_confirmed_cod" in [s.kind for s in kit.recorder.sent]
    kit.service.db.dispose()
