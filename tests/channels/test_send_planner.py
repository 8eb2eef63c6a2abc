"""The send planner end to end (issue 17): a journey outside the WhatsApp window goes as the approved template
at the price of the category WhatsApp gives it now, with its reason in the message log; India SMS carries
its DLT template id to Twilio. Real twilio client against the fake; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from bot.core.settings import Settings
from bot.core.shopconfig import DEFAULTS
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store import content
from integrations import twilio_content
from tests.channels.conftest import ASHA, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

DLT_ID = "1107161234567890123"
PRICING = DEFAULTS["messaging"]["pricing"]


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    overrides = {"contact_policy": {"quiet_hours": ""},
                 "messaging": {"india_dlt": {"templates": {"journey.shipped": DLT_ID}}}}
    return new_service(with_channels(settings, twilio=fake_twilio), shop_overrides=overrides)


def _ship(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/api/orders/A1001/events", headers=auth,
                           json={"type": "shipped", "at": datetime.now(UTC).isoformat()})
    assert response.status_code in (200, 201), response.text


def _log(client: TestClient, auth: dict[str, str]) -> list[dict[str, object]]:
    return client.get("/api/orders/A1001/messages", headers=auth).json()["messages"]  # type: ignore[no-any-return]


def test_outside_the_window_the_template_goes_at_the_category_whatsapp_gives_it(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service, customer={"channel": "whatsapp"})
    report = asyncio.run(twilio_content.sync(service.settings))
    fake_twilio.approve("doorstep_shipped_en", category="MARKETING")  # WhatsApp re-files it
    with service.db.session() as session:
        content.save(session, asyncio.run(twilio_content.sync(service.settings)).synced)
    assert "doorstep_shipped_en" in report.submitted

    _ship(client, auth)
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    assert sent["to"] == f"whatsapp:{ASHA}", [(m["channel"], m["plan"], m["error"]) for m in _log(client, auth)]
    assert sent["content_sid"] == fake_twilio.content_named("doorstep_shipped_en")["sid"]
    assert json.loads(sent["content_variables"])["1"] == "A1001"

    [shipped] = [m for m in _log(client, auth) if m["journey"] == "shipped"]
    plan = shipped["plan"]
    assert isinstance(plan, dict)
    assert (plan["channel"], plan["form"], plan["category"]) == ("whatsapp", "template", "marketing")
    assert plan["price"] == pytest.approx(PRICING["whatsapp_fee"] + PRICING["whatsapp"]["IN"]["marketing"])
    assert "template doorstep_shipped_en" in str(plan["reason"]) and "files it as marketing" in str(plan["reason"])


def test_without_an_approved_template_the_planner_sends_sms_with_its_dlt_id(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service, customer={"channel": "whatsapp"})
    with service.db.session() as session:  # submitted, not approved yet
        content.save(session, asyncio.run(twilio_content.sync(service.settings)).synced)
    _ship(client, auth)
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    assert sent["to"] == ASHA and sent["dlt_template_id"] == DLT_ID and "A1001" in sent["body"]
    [shipped] = [m for m in _log(client, auth) if m["journey"] == "shipped"]
    reason = str(shipped["plan"]["reason"])  # type: ignore[index]
    assert shipped["channel"] == "sms" and "no approved template (doorstep_shipped_en: received)" in reason


def test_a_reply_is_a_free_session_message_and_says_so(client: TestClient, service: Service,
                                                       fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service)
    form, headers = fake_twilio.inbound("https://doorstep.example.com", from_=f"whatsapp:{ASHA}",
                                        body="where is my order")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    drain(Dispatcher(service.db, service.settings))
    reply = [m for m in _log(client, auth) if m["direction"] == "out"][-1]
    assert reply["plan"]["form"] == "session" and reply["plan"]["price"] == PRICING["whatsapp_fee"]  # type: ignore[index]


def test_the_plan_is_in_the_inbox_transcript_and_pacing_spaces_proactive_messages(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    from sqlmodel import select

    from bot.core.models import Customer, Message
    from bot.store.conversations import conversation_for
    from bot.store.escalations import transcript
    from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message

    service = new_service(with_channels(settings, twilio=fake_twilio),
                          shop_overrides={"messaging": {"planner": {"min_gap_per_recipient": "10m"}}})
    add_order(service)
    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        conversation = conversation_for(session, asha, "sms")
        session.flush()
        first, second = (enqueue_message(session=session, customer=asha, channel="sms", text=text,
                                         conversation_id=conversation.id, priority=PRIORITY_TRANSACTIONAL)
                         for text in ("Your order shipped", "Your order is out for delivery"))
        assert first is not None and second is not None
        assert first.due_at is not None and second.due_at is not None
        assert (second.due_at - first.due_at).total_seconds() >= 600
        assert "paced" in second.plan["reason"] and "paced" not in first.plan["reason"]  # type: ignore[index]
        lines = transcript(session=session, conversation_id=conversation.id or 0)
        assert [line["plan"]["channel"] for line in lines] == ["sms", "sms"]
        assert all(line["plan"]["price"] == PRICING["sms"]["IN"] for line in lines)
        session.add(Message(customer_id=asha.id, conversation_id=conversation.id, direction="in", channel="sms",
                            text="thanks", status="processed"))
        session.flush()
        assert transcript(session=session, conversation_id=conversation.id or 0)[-1]["plan"] is None


def test_a_journey_with_its_own_approved_template_uses_it_and_the_others_go_by_sms(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    from sqlmodel import select

    from bot.core.models import Customer
    from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message

    service = new_service(with_channels(settings, twilio=fake_twilio, twilio_whatsapp_templates="journey.shipped=HX1111"),
                          shop_overrides={"contact_policy": {"quiet_hours": ""}})
    add_order(service, customer={"channel": "whatsapp"})
    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        shipped, delivered = (enqueue_message(session=session, customer=asha, channel="whatsapp", text=text,
                                              template=template, priority=PRIORITY_TRANSACTIONAL)
                              for text, template in (("Shipped!", "journey.shipped"), ("Delivered!", "journey.delivered")))
        assert shipped is not None and delivered is not None
        assert (shipped.channel, shipped.plan["form"]) == ("whatsapp", "template")  # type: ignore[index]
        assert delivered.channel == "sms" and "no approved template" in delivered.plan["reason"]  # type: ignore[index]
    drain(Dispatcher(service.db, service.settings))
    assert sorted((m["to"], m["content_sid"] or m["body"]) for m in fake_twilio.sent_to(ASHA)) == [
        (ASHA, "Delivered!"), (f"whatsapp:{ASHA}", "HX1111")]
