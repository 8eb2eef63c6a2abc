"""The escalations API and conversation ownership, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core.models import Conversation, Escalation, LogisticsEvent, Message, Outbox
from bot.core.settings import Settings
from bot.service import Service
from tests.handoff.helpers import PHONE, add_order, escalate, say


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings)


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as c:
        yield c


def _owner(service: Service) -> str:
    with service.db.session() as session:
        return session.exec(select(Conversation)).one().owner


def _outbound_texts(service: Service) -> list[str]:
    with service.db.session() as session:
        return [m.text for m in session.exec(select(Message).where(Message.direction == "out").order_by(Message.id))]


def test_human_intent_opens_an_escalation_with_the_full_context(service: Service, client: TestClient,
                                                               auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    assert _owner(service) == "waiting_human"

    listed = client.get("/api/escalations?status=open", headers=auth)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["reason"] == "customer_asked" and item["status"] == "open" and item["order_id"] == "A1001"
    assert item["channel"] == "console" and item["owner"] == "waiting_human"
    assert 29 * 60 < item["sla_seconds_left"] <= 30 * 60 and item["overdue"] is False

    detail = client.get(f"/api/escalations/{item['id']}", headers=auth).json()
    packet = detail["context"]
    assert packet["order"]["order_id"] == "A1001" and packet["order"]["tracking_url"].endswith("DL123")
    assert packet["order"]["status"] == "placed" and packet["order"]["shipping_address"]["city"] == "Bengaluru"
    said = [(line["direction"], line["text"], line["intent"]) for line in packet["transcript"]]
    assert ("in", "where is my order", "wismo") in said
    assert ("in", "I want to talk to a human", "human") in said
    assert all(line["confidence"] is not None for line in packet["transcript"] if line["direction"] == "in")
    assert packet["sla_due_at"] and packet["reason"] == "customer_asked"
    assert packet["customer"]["phone_masked"] != PHONE and packet["customer"]["phone_masked"].endswith("5678")
    # The live transcript also shows the bot's "connecting" reply, authored by the bot.
    assert any(t["author_kind"] == "bot" and "colleague" in t["text"] for t in detail["transcript"])

    with service.db.session() as session:
        event = session.exec(select(LogisticsEvent).where(LogisticsEvent.type == "escalation.created")).one()
        assert event.data["escalation_id"] == item["id"] and event.order_id == "A1001"
        assert session.exec(select(Outbox).where(Outbox.kind == "agent_notify")).one().payload["escalation_id"] == item["id"]


def test_bot_stays_quiet_while_a_human_owns_the_conversation(service: Service, client: TestClient,
                                                            auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    before = len(_outbound_texts(service))

    ack = say(service, "hello? where is my order")
    assert len(ack.replies) == 1 and "colleague will reply" in ack.replies[0].text  # the one acknowledgement
    again = say(service, "where is my order!!!")
    assert again.replies == []  # only once
    assert len(_outbound_texts(service)) == before + 1

    esc_id = client.get("/api/escalations", headers=auth).json()["items"][0]["id"]
    detail = client.get(f"/api/escalations/{esc_id}", headers=auth).json()
    # Messages sent after the escalation still reach the agent, live.
    assert detail["transcript"][-1]["text"] == "where is my order!!!"
    assert detail["ack_sent"] is True and detail["last_customer_message_at"] is not None

    assigned = client.post(f"/api/escalations/{esc_id}/assign", json={"agent": "Meera"}, headers=auth)
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "Meera"
    assert _owner(service) == "human"
    assert say(service, "are you there?").replies == []


def test_ack_can_be_turned_off_or_rewritten_in_shop_config(settings: Settings) -> None:
    quiet = Service.create(settings, shop_overrides={"escalation": {"ack_message": False}})
    add_order(quiet)
    escalate(quiet)
    assert say(quiet, "hello?").replies == []

    custom = Service.create(settings, shop_overrides={"escalation": {"ack_message": "Hang tight, Meera is on it."}})
    say(custom, "hi", phone="+919800000002")  # a customer with no order still reaches a person
    escalate(custom, phone="+919800000002")
    assert [m.text for m in say(custom, "hello?", phone="+919800000002").replies] == ["Hang tight, Meera is on it."]


def test_agent_reply_goes_out_on_the_customers_channel_and_takes_ownership(service: Service, client: TestClient,
                                                                           auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    esc_id = client.get("/api/escalations", headers=auth).json()["items"][0]["id"]
    sent = client.post(f"/api/escalations/{esc_id}/reply", json={"text": "Hi Asha, Meera here. Checking now.",
                                                                "agent": "Meera"}, headers=auth)
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["channel"] == "console" and body["delivery"] == "free_form" and body["owner"] == "human"
    with service.db.session() as session:
        message = session.get(Message, body["message_id"])
        assert message is not None and message.text == "Hi Asha, Meera here. Checking now."
        assert message.channel == "console" and message.status == "queued"
        row = session.exec(select(Outbox).where(Outbox.message_id == body["message_id"])).one()
        assert row.kind == "message" and row.status == "pending"
    detail = client.get(f"/api/escalations/{esc_id}", headers=auth).json()
    assert detail["status"] == "assigned" and detail["assignee"] == "Meera" and detail["first_response_at"]
    last = detail["transcript"][-1]
    assert last["author"] == "Meera" and last["author_kind"] == "agent" and last["fallback"] is False


def test_resolve_hands_the_conversation_back_to_the_bot(service: Service, client: TestClient,
                                                        auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    esc_id = client.get("/api/escalations", headers=auth).json()["items"][0]["id"]
    resolved = client.post(f"/api/escalations/{esc_id}/resolve", json={"agent": "Meera", "note": "refund issued"},
                           headers=auth)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"] == "Meera" and _owner(service) == "resolved"
    assert client.get("/api/escalations?status=open", headers=auth).json()["items"] == []
    assert [e["id"] for e in client.get("/api/escalations?status=resolved", headers=auth).json()["items"]] == [esc_id]

    answer = say(service, "where is my order")  # the bot answers again
    assert len(answer.replies) == 1 and "A1001" in answer.replies[0].text
    assert _owner(service) == "bot"
    # Replying to a resolved escalation is refused and queues nothing.
    before = len(_outbound_texts(service))
    late = client.post(f"/api/escalations/{esc_id}/reply", json={"text": "one more thing"}, headers=auth)
    assert late.status_code == 409 and len(_outbound_texts(service)) == before
    # Resolving twice is harmless; a new request for a person opens a new escalation.
    assert client.post(f"/api/escalations/{esc_id}/resolve", headers=auth).status_code == 200
    say(service, "agent")
    items = client.get("/api/escalations?status=open", headers=auth).json()["items"]
    assert len(items) == 1 and items[0]["id"] != esc_id


def test_open_list_is_sorted_by_sla(settings: Settings, auth: dict[str, str]) -> None:
    now = [datetime(2026, 11, 22, 10, 0, tzinfo=UTC)]
    service = Service.create(settings, clock=lambda: now[0])
    add_order(service)
    add_order(service, order_id="B2", phone="+919800000003")
    escalate(service, phone="+919800000003")  # first, so its SLA runs out first
    now[0] += timedelta(minutes=10)
    escalate(service)
    with TestClient(create_app(service=service)) as client:
        items = client.get("/api/escalations?status=open", headers=auth).json()["items"]
        assert [i["order_id"] for i in items] == ["B2", "A1001"]
        now[0] += timedelta(minutes=25)
        items = client.get("/api/escalations?status=open", headers=auth).json()["items"]
        assert [i["overdue"] for i in items] == [True, False]


def test_bad_requests_get_clear_4xx_and_change_nothing(service: Service, client: TestClient,
                                                      auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    esc_id = client.get("/api/escalations", headers=auth).json()["items"][0]["id"]
    before = len(_outbound_texts(service))
    assert client.get("/api/escalations", headers={}).status_code == 401
    assert client.post(f"/api/escalations/{esc_id}/reply", json={"text": "x"}).status_code == 401
    assert client.get("/api/escalations/999999", headers=auth).status_code == 404
    assert client.get("/api/escalations/99999999999999999999", headers=auth).status_code == 422
    assert client.get("/api/escalations/abc", headers=auth).status_code == 422
    assert client.get("/api/escalations?status=bogus", headers=auth).status_code == 422
    assert client.post("/api/escalations/999999/reply", json={"text": "hi"}, headers=auth).status_code == 404
    assert client.post(f"/api/escalations/{esc_id}/reply", json={"text": ""}, headers=auth).status_code == 422
    assert client.post(f"/api/escalations/{esc_id}/reply", json={"text": "   "}, headers=auth).status_code == 422
    huge = client.post(f"/api/escalations/{esc_id}/reply", json={"text": "x" * 100_000}, headers=auth)
    assert huge.status_code == 422 and "xxxx" not in huge.text
    binary = client.post(f"/api/escalations/{esc_id}/reply", content=b"\xff\x00\xfe" * 100,
                         headers={**auth, "Content-Type": "application/json"})
    assert binary.status_code == 422
    assert client.post(f"/api/escalations/{esc_id}/reply", json={"text": "hi", "to": PHONE},
                       headers=auth).status_code == 422
    assert client.post(f"/api/escalations/{esc_id}/assign", json={"agent": ""}, headers=auth).status_code == 422
    assert len(_outbound_texts(service)) == before and _owner(service) == "waiting_human"


def test_a_human_owned_conversation_without_an_open_escalation_reopens_one(service: Service, client: TestClient,
                                                                           auth: dict[str, str]) -> None:
    add_order(service)
    escalate(service)
    with service.db.session() as session:  # an operator closed it in the database, not through the API
        escalation = session.exec(select(Escalation)).one()
        escalation.status = "resolved"
        session.add(escalation)
    handled = say(service, "hello, anyone?")
    assert all("A1001" not in m.text for m in handled.replies)  # the bot did not take over
    [item] = client.get("/api/escalations?status=open", headers=auth).json()["items"]
    assert item["reason"] == "customer_waiting"
    assert any(line["text"] == "hello, anyone?" for line in item["transcript"])
    assert _owner(service) == "waiting_human"
