"""Viber end to end against a fake Viber bot API on loopback: signed callbacks, linking by deep link,
text through the same pipeline, keyboard buttons, delivery/seen status, consent. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select

from bot.app import create_app
from bot.core.models import Customer, Message
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.wiring import viber_set_webhook
from tests.channels.conftest import ASHA, add_order, drain, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.viber_server import AUTH_TOKEN, FakeViber, callback, text_message, user

VIBER_USER = "01234567890A="
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture
def service(settings: Settings, fake_viber: FakeViber, fake_twilio: FakeTwilio) -> Service:
    service = new_service(with_channels(
        settings, twilio=fake_twilio, quiet_hours="", viber_auth_token=SecretStr(AUTH_TOKEN),
        viber_bot_name="Demo Shop", viber_chat_uri="demoshop", viber_api_base_url=fake_viber.url))
    add_order(service)
    return service


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as test_client:
        yield test_client


def customer(service: Service) -> Customer:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == ASHA)).one()


def viber_log(service: Service) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.channel == "viber").order_by(col(Message.id))))


def post(client: TestClient, signed: tuple[bytes, dict[str, str]]) -> dict:  # type: ignore[type-arg]
    body, headers = signed
    response = client.post("/webhooks/viber", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def link(client: TestClient, service: Service, user_id: str = VIBER_USER) -> dict:  # type: ignore[type-arg]
    token = customer(service).telegram_link_token
    return post(client, callback("conversation_started", type="open", context=token, user=user(user_id),
                                 subscribed=False, message_token=1))


def send_all(service: Service) -> None:
    drain(Dispatcher(service.db, service.settings))


@pytest.mark.parametrize("signature", [None, "", "00" * 32, "not-hex"])
def test_a_bad_signature_is_403_and_stores_nothing(client: TestClient, service: Service, signature: str | None) -> None:
    body, headers = text_message(VIBER_USER, "where is my order", 11)
    headers = {"content-type": "application/json"} | ({} if signature is None else
                                                      {"X-Viber-Content-Signature": signature})
    assert client.post("/webhooks/viber", content=body, headers=headers).status_code == 403
    body, headers = text_message(VIBER_USER, "where is my order", 12)
    assert client.post("/webhooks/viber", content=body + b" ", headers=headers).status_code == 403
    assert viber_log(service) == []


def test_the_set_webhook_check_and_set_webhook(client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    assert post(client, callback("webhook", message_token=1)) == {"ok": True}
    answer = asyncio.run(viber_set_webhook(service.settings))
    assert fake_viber.webhook["url"] == "https://doorstep.example.com/webhooks/viber"
    assert {"delivered", "seen", "subscribed", "unsubscribed", "conversation_started"} <= set(answer["event_types"])


def test_deep_link_links_the_user_and_text_goes_through_the_pipeline(
        client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    welcome = link(client, service)
    assert "connected" in welcome["text"] and "Asha" in welcome["text"] and welcome["receiver"] == VIBER_USER
    assert customer(service).viber_user_id == VIBER_USER

    result = post(client, text_message(VIBER_USER, "where is my order", 101))
    assert result == {"ok": True, "handled": True, "duplicate": False}
    assert post(client, text_message(VIBER_USER, "where is my order", 101))["duplicate"] is True
    send_all(service)
    [inbound] = [m for m in viber_log(service) if m.direction == "in"]
    assert inbound.intent == "wismo" and inbound.text == "where is my order"
    [answer] = fake_viber.sent_to(VIBER_USER)
    assert "A1001" in answer["text"] and answer["sender"]["name"] == "Demo Shop"


def test_a_token_never_moves_a_linked_customer_to_another_user(client: TestClient, service: Service) -> None:
    link(client, service)
    welcome = link(client, service, user_id="someone-else=")
    assert "open the Viber link" in welcome["text"]
    assert customer(service).viber_user_id == VIBER_USER
    forged = post(client, callback("conversation_started", type="open", context="not-a-token",
                                   user=user("third="), subscribed=False, message_token=2))
    assert "open the Viber link" in forged["text"]


def test_an_unlinked_user_is_told_how_to_link_and_nothing_is_stored(
        client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    assert post(client, text_message("stranger=", "where is my order A1001", 7))["handled"] is False
    [told] = fake_viber.sent_to("stranger=")
    assert "Viber link" in told["text"] and "A1001" not in told["text"]
    assert viber_log(service) == []


def test_buttons_become_a_keyboard_and_a_press_comes_back_as_text(
        client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    link(client, service)
    post(client, text_message(VIBER_USER, "CANCEL", 201))
    send_all(service)
    [question] = fake_viber.sent_to(VIBER_USER)
    buttons = question["keyboard"]["Buttons"]
    assert [b["ActionBody"] for b in buttons] == ["/btn:cancel_order", "STOP"]
    assert all(b["ActionType"] == "reply" and b["Text"] for b in buttons)
    post(client, text_message(VIBER_USER, buttons[0]["ActionBody"], 202))
    send_all(service)
    assert "A1001" in fake_viber.sent_to(VIBER_USER)[-1]["text"]


def test_delivered_and_seen_callbacks_move_the_status_forward_only(
        client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    link(client, service)
    post(client, text_message(VIBER_USER, "where is my order", 301))
    send_all(service)
    [answer] = fake_viber.sent_to(VIBER_USER)
    token = answer["message_token"]
    post(client, callback("seen", message_token=token, user_id=VIBER_USER))
    post(client, callback("delivered", message_token=token, user_id=VIBER_USER))  # late: no step back
    [out] = [m for m in viber_log(service) if m.direction == "out"]
    assert out.status == "read"


def test_unsubscribe_is_an_opt_out_and_subscribe_an_opt_in(
        client: TestClient, service: Service, fake_viber: FakeViber, fake_twilio: FakeTwilio) -> None:
    link(client, service)
    post(client, callback("unsubscribed", user_id=VIBER_USER, message_token=401))
    assert "viber" in customer(service).opted_out_channels
    response = client.post("/api/orders/A1001/events", headers=AUTH,
                           json={"type": "confirmed", "at": datetime.now(UTC).isoformat()})
    assert response.status_code == 201
    send_all(service)
    assert fake_viber.sent_to(VIBER_USER) == []
    post(client, callback("subscribed", user=user(VIBER_USER), message_token=402))
    assert "viber" not in customer(service).opted_out_channels


def test_journeys_go_by_viber_to_a_linked_customer_who_prefers_it(
        client: TestClient, service: Service, fake_viber: FakeViber, fake_twilio: FakeTwilio) -> None:
    link(client, service)
    payload = {"order_id": "A2002", "customer": {"name": "Asha", "phone": ASHA, "channel": "viber"},
               "items": [{"sku": "MUG", "name": "Coffee mug", "qty": 1, "price": "250.00"}], "total": "250.00"}
    assert client.post("/api/orders", json=payload, headers=AUTH).status_code == 201
    send_all(service)
    sent = fake_viber.sent_to(VIBER_USER)  # the confirmation, and the question about the incomplete address
    assert "A2002" in sent[0]["text"] and "Coffee mug" in sent[0]["text"]
    assert fake_twilio.sent_to(ASHA) == []


def test_provider_refusals_map_to_opt_out_and_retry(client: TestClient, service: Service, fake_viber: FakeViber) -> None:
    link(client, service)
    fake_viber.fail_next(12)
    post(client, text_message(VIBER_USER, "where is my order", 501))
    send_all(service)
    [out] = [m for m in viber_log(service) if m.direction == "out"]
    assert out.status == "queued"  # rate limited: tried again later

    with service.db.session() as session:
        from bot.core.models import Outbox

        row = session.exec(select(Outbox).where(Outbox.message_id == out.id)).one()
        row.due_at = datetime.now(UTC)
        session.add(row)
    fake_viber.fail_next(6)
    send_all(service)
    [out] = [m for m in viber_log(service) if m.direction == "out"]
    assert out.status == "failed" and "viber" in customer(service).opted_out_channels
