"""COD reminders and escalation, the NPS survey and its reply, reorder nudges."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Conversation, Customer, Escalation, JourneyTimer, Order, OrderEvent
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit


def _say(kit: Kit, text: str) -> list[str]:
    handled = kit.service.handle_inbound(InboundMessage(channel="sms", text=text, phone="+919812345678",
                                                        provider_message_id=f"SM{uuid.uuid4().hex}",
                                                        received_at=kit.clock()))
    return [m.text for m in handled.replies]


def test_cod_order_asks_for_confirmation_with_the_telegram_deep_link(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings.model_copy(update={"telegram_bot_username": "DoorstepBot"}), auth, ist(23, 10))
    with kit.client:
        kit.post_order(payment_method="cod")
        kit.run_until(kit.clock())
        with kit.service.db.session() as session:
            token = session.exec(select(Customer)).one().telegram_link_token
        text = kit.recorder.sent[0].text
        assert "Reply YES to confirm" in text and "Rs. 499.00" in text
        assert f"https://t.me/DoorstepBot?start={token}" in text


def test_unanswered_cod_gets_a_reminder_at_2h_and_a_needs_call_escalation_at_12h(kit: Kit) -> None:
    kit.post_order(payment_method="cod")
    kit.run_until(ist(23, 11, 55))
    assert len(kit.recorder.sent) == 1
    kit.run_until(ist(23, 12, 15))
    assert len(kit.recorder.sent) == 2 and "Reminder" in kit.recorder.sent[1].text
    kit.run_until(ist(23, 21, 45))
    with kit.service.db.session() as session:
        assert session.exec(select(Escalation)).first() is None
    kit.run_until(ist(23, 22, 15))
    with kit.service.db.session() as session:
        escalation = session.exec(select(Escalation)).one()
        assert escalation.reason == "needs_call" and escalation.status == "open"
        assert session.exec(select(Conversation)).one().owner == "waiting_human"
    assert len(kit.recorder.sent) == 2  # the customer is not messaged at night for it


def test_confirmed_cod_gets_no_reminder_and_no_escalation(kit: Kit) -> None:
    kit.post_order(payment_method="cod")
    kit.run_until(ist(23, 11))
    with kit.service.db.session() as session:  # what the COD flow does when the customer replies YES
        order = session.exec(select(Order)).one()
        order.cod_status = "confirmed"
        session.add(order)
    kit.run_until(ist(24, 10), step=timedelta(hours=1))
    assert len(kit.recorder.sent) == 1
    with kit.service.db.session() as session:
        assert session.exec(select(Escalation)).first() is None
        outcomes = {t.kind: t.status for t in session.exec(select(JourneyTimer))}
        assert outcomes == {"cod_reminder": "skipped", "cod_escalation": "skipped"}


def test_nps_survey_after_delivery_and_a_promoter_gets_the_review_link(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10), review_link="https://reviews.example.com/shop")
    with kit.client:
        kit.post_order()
        kit.event("A1001", "delivered")
        kit.run_until(ist(26, 9, 45), step=timedelta(hours=1))
        assert not any(s.kind == "journey.feedback" for s in kit.recorder.sent)
        kit.run_until(ist(26, 10, 15))
        survey = [s for s in kit.recorder.sent if s.kind == "journey.feedback"]
        assert len(survey) == 1 and "0 (not at all) to 10" in survey[0].text
        replies = _say(kit, "9")
        assert len(replies) == 1 and "https://reviews.example.com/shop" in replies[0]
        with kit.service.db.session() as session:
            event = session.exec(select(OrderEvent).where(OrderEvent.type == "feedback")).one()
            assert event.note == "NPS 9/10"
            assert session.exec(select(Conversation)).one().flow is None


def test_a_detractor_is_escalated(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "delivered")
    kit.run_until(ist(26, 10, 15), step=timedelta(hours=2))
    replies = _say(kit, "3")
    assert len(replies) == 1 and "sorry" in replies[0].lower()
    with kit.service.db.session() as session:
        escalation = session.exec(select(Escalation)).one()
        assert escalation.reason == "detractor" and "NPS 3/10" in escalation.note


def test_no_survey_for_a_returned_order(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "delivered")
    kit.clock.advance(timedelta(days=1))
    kit.event("A1001", "returned")
    kit.run_until(ist(28, 12), step=timedelta(hours=2))
    assert not any(s.kind == "journey.feedback" for s in kit.recorder.sent)


def test_reorder_nudge_for_consumable_skus_only(kit: Kit) -> None:
    items = [{"sku": "BEANS", "name": "Coffee beans", "qty": 1, "price": "350.00", "consumable_days": 20},
             {"sku": "MUG", "name": "Mug", "qty": 1, "price": "200.00"}]
    kit.service.runtime.shop_config["journeys"]["feedback"]["enabled"] = False
    kit.post_order(items=items)
    kit.event("A1001", "delivered")
    reorder = [m for m in kit.log("A1001") if m["journey"] == "reorder"]
    assert len(reorder) == 1 and reorder[0]["status"] == "scheduled" and "Coffee beans" in reorder[0]["text"]
    assert reorder[0]["due_at"].startswith("2026-12-13")


def test_cod_asked_at_night_is_reminded_2h_after_the_morning_question(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 23, 30))
    with kit.client:
        kit.post_order(payment_method="cod")
        kit.run_until(ist(24, 9, 55))
        assert [s.kind for s in kit.recorder.sent] == ["journey.order_confirmed_cod"]
        assert kit.recorder.sent[0].at == ist(24, 8)
        kit.run_until(ist(24, 10, 15))
        assert [s.kind for s in kit.recorder.sent] == ["journey.order_confirmed_cod", "journey.cod_reminder"]


def test_yes_to_the_cod_question_confirms_and_stops_the_reminders(kit: Kit) -> None:
    kit.post_order(payment_method="cod")
    kit.run_until(ist(23, 10, 30))
    replies = _say(kit, "yes")
    assert replies  # the COD flow answered
    with kit.service.db.session() as session:
        assert session.exec(select(Order)).one().cod_status == "confirmed"
    kit.run_until(ist(24, 10), step=timedelta(hours=1))
    assert [s.kind for s in kit.recorder.sent if s.kind.startswith("journey.")] == ["journey.order_confirmed_cod"]
    with kit.service.db.session() as session:
        assert session.exec(select(Escalation)).first() is None
