"""Chatwoot hand-off against a fake Chatwoot API on loopback, on SQLite and PostgreSQL:
an escalation opens a contact + conversation + private note; an agent's reply there
reaches the customer; resolving there hands the conversation back to the bot."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select

from bot.app import create_app
from bot.core.channels import InboundMessage
from bot.core.models import ChatwootLink, Conversation, Escalation, Message, Outbox
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.orders import apply_event, upsert_order
from integrations.chatwoot import enqueue_escalations
from tests.fakes.chatwoot_server import FakeChatwoot
from tests.support.factories import order_payload

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chatwoot"
API_TOKEN = "chatwoot-agent-api-token"
HOOK_TOKEN = "chatwoot-webhook-token-123"
ASHA = "+919812345678"


@pytest.fixture
def chatwoot() -> Iterator[FakeChatwoot]:
    fake = FakeChatwoot(token=API_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def service(make_service: Callable[..., Service], settings: Settings, chatwoot: FakeChatwoot) -> Service:
    configured = settings.model_copy(update={
        "chatwoot_url": chatwoot.url, "chatwoot_api_token": SecretStr(API_TOKEN), "chatwoot_account_id": 1,
        "chatwoot_inbox_id": chatwoot.inbox_id, "chatwoot_webhook_token": SecretStr(HOOK_TOKEN),
        "allow_private_urls": True})  # the fake Chatwoot listens on loopback
    service = make_service(configured)
    with service.db.session() as session:
        order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
        session.flush()
        apply_event(session=session, order=order, event_in=OrderEventIn(type="shipped"))
    return service


def say(service: Service, text: str) -> list[Message]:
    handled = service.handle_inbound(InboundMessage(channel="console", text=text, phone=ASHA,
                                                    provider_message_id=f"t-{uuid.uuid4()}"))
    return handled.replies


def deliver(service: Service) -> None:
    asyncio.run(Dispatcher(service.db, service.settings, kinds=("chatwoot",)).run_once_and_close())


def escalate(service: Service) -> Escalation:
    say(service, "I want to talk to a human please")
    with service.db.session() as session:
        return session.exec(select(Escalation)).one()


def webhook(name: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    for key, value in changes.items():
        if key == "conversation_id":
            payload["conversation"]["id"] = value
        else:
            payload[key] = value
    return payload


def test_escalation_opens_a_chatwoot_conversation_with_the_context_note(service: Service,
                                                                        chatwoot: FakeChatwoot) -> None:
    escalation = escalate(service)
    assert enqueue_escalations(service) == 1
    assert enqueue_escalations(service) == 0, "one Chatwoot conversation per escalation"
    deliver(service)
    assert len(chatwoot.contacts) == 1 and list(chatwoot.contacts.values())[0]["phone_number"] == ASHA
    [conversation] = chatwoot.conversations.values()
    assert conversation["inbox_id"] == chatwoot.inbox_id
    assert conversation["custom_attributes"]["doorstep_escalation_id"] == escalation.id
    [note] = chatwoot.messages
    assert note["private"] is True
    assert "A1001" in note["content"] and "talk to a human" in note["content"]
    with service.db.session() as session:
        link = session.exec(select(ChatwootLink)).one()
        assert (link.status, link.chatwoot_conversation_id) == ("open", conversation["id"])
        assert session.exec(select(Outbox).where(Outbox.kind == "chatwoot")).one().status == "sent"


def test_chatwoot_down_is_retried_without_a_second_conversation(service: Service, chatwoot: FakeChatwoot) -> None:
    escalate(service)
    enqueue_escalations(service)
    chatwoot.fail_next = 1
    deliver(service)
    with service.db.session() as session:
        row = session.exec(select(Outbox).where(Outbox.kind == "chatwoot")).one()
        assert row.status == "pending" and row.attempts == 1
        row.due_at = row.created_at  # skip the backoff
        session.add(row)
    deliver(service)
    assert len(chatwoot.conversations) == 1 and len(chatwoot.messages) == 1


def test_agent_reply_reaches_the_customer_and_resolve_hands_back(service: Service, chatwoot: FakeChatwoot) -> None:
    escalate(service)
    enqueue_escalations(service)
    deliver(service)
    [conversation_id] = chatwoot.conversations
    client = TestClient(create_app(service=service))
    url = f"/webhooks/chatwoot?token={HOOK_TOKEN}"

    # What the customer writes meanwhile reaches the agent in Chatwoot, once.
    say(service, "hello? the courier has not called me")
    assert enqueue_escalations(service) == 1
    assert enqueue_escalations(service) == 0
    deliver(service)
    incoming = [m for m in chatwoot.messages if not m["private"]]
    assert [(m["conversation_id"], m["message_type"], m["content"]) for m in incoming] == [
        (conversation_id, 0, "hello? the courier has not called me")]

    reply = client.post(url, json=webhook("message_created", conversation_id=conversation_id))
    assert reply.status_code == 200 and reply.json()["status"] == "queued"
    again = client.post(url, json=webhook("message_created", conversation_id=conversation_id))
    assert again.json()["status"] == "duplicate"
    note = client.post(url, json=webhook("message_created", conversation_id=conversation_id, id=9999, private=True))
    assert note.json()["status"] == "ignored"
    incoming = client.post(url, json=webhook("message_created", conversation_id=conversation_id, id=9998,
                                             message_type="incoming"))
    assert incoming.json()["status"] == "ignored"
    with service.db.session() as session:
        sent = session.exec(select(Message).where(Message.direction == "out",
                                                  col(Message.text).contains("call you before delivery"))).all()
        assert [(m.channel, m.status) for m in sent] == [("console", "queued")]
        assert session.exec(select(Conversation)).one().owner == "human"

    resolved = client.post(url, json=webhook("conversation_status_changed", id=conversation_id))
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    with service.db.session() as session:
        assert session.exec(select(Escalation)).one().status == "resolved"
    answer = say(service, "where is my order")
    assert answer and "A1001" in answer[0].text, "the bot answers again after the hand-back"


def test_webhook_token_and_bad_bodies(service: Service) -> None:
    client = TestClient(create_app(service=service))
    payload = webhook("message_created")
    assert client.post("/webhooks/chatwoot?token=wrong", json=payload).status_code == 401
    assert client.post("/webhooks/chatwoot", json=payload).status_code == 401
    bad = client.post(f"/webhooks/chatwoot?token={HOOK_TOKEN}", content=b"\x00\xff{")
    assert bad.status_code == 400
    assert client.post(f"/webhooks/chatwoot?token={HOOK_TOKEN}", json=[1]).status_code == 400
    unknown = client.post(f"/webhooks/chatwoot?token={HOOK_TOKEN}", json=webhook("message_created",
                                                                               conversation_id=424242))
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
    with service.db.session() as session:
        assert session.exec(select(Message).where(Message.direction == "out")).all() == []


def test_not_configured_does_nothing(make_service: Callable[..., Service], settings: Settings) -> None:
    service = make_service(settings)
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
    escalate(service)
    assert enqueue_escalations(service) == 0
    response = TestClient(create_app(service=service)).post("/webhooks/chatwoot?token=x",
                                                            json=webhook("message_created"))
    assert response.status_code == 401 and "CHATWOOT_WEBHOOK_TOKEN" in response.json()["detail"]
