"""While a person owns a conversation, automatic messages (journeys, reminders) are held, not
sent: the agent sees them in the inbox thread and can send one with a click; handing back sends
those still relevant and drops the obsolete (expired, or superseded by a later order status).

Through the HTTP routes (orders API, inbox, escalations API), with the real twilio client
against the fake Twilio on loopback and one injectable clock. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core.channels import InboundMessage
from bot.core.models import Conversation, Customer, Escalation, Message
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, Clock, add_order, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import FakeTwilio

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def _say(service: Service, text: str) -> None:
    service.handle_inbound(InboundMessage(channel="sms", text=text, phone=ASHA,
                                          provider_message_id=f"SM{uuid.uuid4().hex}"))


def _drain(dispatcher: Dispatcher) -> None:
    for _ in range(4):
        asyncio.run(dispatcher.run_once_and_close())


def _event(client: TestClient, clock: Clock, kind: str) -> None:
    response = client.post("/api/orders/A1001/events", headers=AUTH, json={"type": kind, "at": clock().isoformat()})
    assert response.status_code in (200, 201), response.text


def _log(client: TestClient) -> dict[str, dict[str, Any]]:
    """The order's message log, outbound messages by template (the latest of each)."""
    messages = client.get("/api/orders/A1001/messages", headers=AUTH).json()["messages"]
    return {m["template"]: m for m in messages if m["direction"] == "out" and m["template"]}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _login(client: TestClient) -> None:
    page = client.get("/inbox/login")
    response = client.post("/inbox/login", data={"token": TEST_API_KEY, "name": "Meera", "csrf": _csrf(page.text)},
                           follow_redirects=False)
    assert response.status_code == 303


def _setup(settings: Settings, fake: FakeTwilio) -> tuple[Service, Clock, Dispatcher, int]:
    clock = Clock()
    clock.now = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # 11:30 in Kolkata: outside quiet hours
    service = new_service(with_channels(settings, twilio=fake), clock=clock)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    add_order(service)
    _say(service, "where is my order")
    _say(service, "I want to talk to a human")
    _drain(dispatcher)
    with service.db.read() as session:
        conversation = session.exec(select(Conversation)).one()
        assert conversation.owner == "waiting_human"
        escalation = session.exec(select(Escalation)).one()
    return service, clock, dispatcher, escalation.id or 0


def test_automatic_messages_are_held_shown_sent_by_click_and_sorted_out_on_hand_back(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    service, clock, dispatcher, escalation_id = _setup(settings, fake_twilio)
    before = len(fake_twilio.sent_to(ASHA))
    with TestClient(create_app(service=service), base_url="https://testserver") as client:
        _event(client, clock, "shipped")
        _drain(dispatcher)
        assert len(fake_twilio.sent_to(ASHA)) == before  # not sent while a person owns the conversation
        shipped = _log(client)["journey.shipped"]
        assert shipped["status"] == "held" and "person" in shipped["error"]

        # The agent sees it in the thread, held, with a one-click send.
        _login(client)
        page = client.get(f"/inbox/escalations/{escalation_id}").text
        action = f"/inbox/escalations/{escalation_id}/held/{shipped['id']}/send"
        assert f'action="{action}"' in page and "status-held" in page
        clicked = client.post(action, data={"csrf": _csrf(page)}, follow_redirects=False)
        assert clicked.status_code == 303 and clicked.headers["location"].endswith("n=held_sent")
        _drain(dispatcher)
        assert [m["body"] for m in fake_twilio.sent_to(ASHA)][before:] == [shipped["text"]]
        assert _log(client)["journey.shipped"]["status"] == "queued"  # accepted by Twilio

        clock.advance(minutes=10)
        _event(client, clock, "out_for_delivery")
        with service.db.session() as session:  # a reminder valid for 20 minutes
            customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
            conversation = session.exec(select(Conversation)).one()
            reminder = enqueue_message(session=session, customer=customer, channel="sms", text="Reminder: pay on delivery",
                                       conversation_id=conversation.id, order_pk=1, template="reminder.test",
                                       priority=PRIORITY_TRANSACTIONAL, expires_at=clock() + timedelta(minutes=20))
            assert reminder is not None
        _drain(dispatcher)
        clock.advance(minutes=10)
        _event(client, clock, "failed_attempt")  # a later status: "out for delivery" is now wrong
        _drain(dispatcher)
        log = _log(client)
        assert {log[t]["status"] for t in ("journey.out_for_delivery", "reminder.test", "journey.failed_attempt")} == {
            "held"}
        assert len(fake_twilio.sent_to(ASHA)) == before + 1

        clock.advance(minutes=30)  # the reminder's validity ends while the agent still has the conversation
        page = client.get(f"/inbox/escalations/{escalation_id}").text
        resolved = client.post(f"/inbox/escalations/{escalation_id}/resolve", data={"csrf": _csrf(page)},
                               follow_redirects=False)
        assert resolved.status_code == 303
        _drain(dispatcher)

        log = _log(client)
        assert log["journey.failed_attempt"]["status"] == "queued"
        assert log["journey.out_for_delivery"]["status"] == "cancelled"
        assert "superseded by failed_attempt" in log["journey.out_for_delivery"]["error"]
        assert log["reminder.test"]["status"] == "expired" and "obsolete" in log["reminder.test"]["error"]
        assert [m["body"] for m in fake_twilio.sent_to(ASHA)][before:] == [
            shipped["text"], log["journey.failed_attempt"]["text"]]


def test_the_agents_own_replies_are_never_held_and_the_api_sends_a_held_message(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    service, clock, dispatcher, escalation_id = _setup(settings, fake_twilio)
    before = len(fake_twilio.sent_to(ASHA))
    with TestClient(create_app(service=service), base_url="https://testserver") as client:
        _event(client, clock, "shipped")
        reply = client.post(f"/api/escalations/{escalation_id}/reply", headers=AUTH,
                            json={"text": "Hi Asha, I am looking into it", "agent": "Meera"})
        assert reply.status_code == 202
        _drain(dispatcher)
        assert [m["body"] for m in fake_twilio.sent_to(ASHA)][before:] == ["Hi Asha, I am looking into it"]
        view = client.get(f"/api/escalations/{escalation_id}", headers=AUTH).json()
        [held] = [line for line in view["transcript"] if line["status"] == "held"]

        path = f"/api/escalations/{escalation_id}/held/{held['id']}/send"
        assert client.post(path).status_code == 401  # keyed like every /api route
        sent = client.post(path, headers=AUTH, json={"agent": "Meera"})
        assert sent.status_code == 202 and sent.json()["message_status"] == "queued"
        assert client.post(path, headers=AUTH).status_code == 409  # not held any more
        assert client.post(f"/api/escalations/{escalation_id}/held/999999/send", headers=AUTH).status_code == 404
        _drain(dispatcher)
        assert [m["body"] for m in fake_twilio.sent_to(ASHA)][before:] == ["Hi Asha, I am looking into it",
                                                                          held["text"]]
    with service.db.read() as session:
        assert session.get(Message, held["id"]).status == "queued"  # type: ignore[union-attr]


def test_a_held_cod_question_released_at_hand_back_reads_the_customers_yes(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    """The COD question of an order placed while a person owned the conversation was held; handed back,
    it goes out with its flow open, so the customer's "yes" confirms that order (not "sorry?")."""
    from tests.support.factories import order_payload

    service, clock, dispatcher, escalation_id = _setup(settings, fake_twilio)
    with TestClient(create_app(service=service), base_url="https://testserver") as client:
        created = client.post("/api/orders", headers=AUTH, json=order_payload("A2002", payment_method="cod"))
        assert created.status_code == 201
        _drain(dispatcher)
        messages = client.get("/api/orders/A2002/messages", headers=AUTH).json()["messages"]
        [question] = [m for m in messages if m["template"] == "journey.order_confirmed_cod"]
        assert question["status"] == "held"

        resolved = client.post(f"/api/escalations/{escalation_id}/resolve", headers=AUTH, json={"agent": "Meera"})
        assert resolved.status_code == 200
        _drain(dispatcher)
        assert fake_twilio.sent_to(ASHA)[-1]["body"] == question["text"]

        _say(service, "yes")
        order = client.get("/api/orders/A2002", headers=AUTH).json()
        assert order["cod_status"] == "confirmed"
        assert client.get("/api/orders/A1001", headers=AUTH).json()["cod_status"] is None  # the other order untouched
