"""Recorded provider payloads (tests/fixtures/twilio, tests/fixtures/telegram) through the real endpoints
and clients: what Twilio and Telegram really send must work, not only what our fakes build."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.core.errors import RecipientOptedOut
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.outbox import enqueue_message
from tests.channels.conftest import (
    ASHA,
    PUBLIC_URL,
    TELEGRAM_SECRET,
    Clock,
    add_order,
    drain,
    new_service,
    with_channels,
)
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.twilio_server import FakeTwilio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(provider: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / provider / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio, fake_telegram: FakeTelegram) -> Service:
    service = new_service(with_channels(settings, twilio=fake_twilio, telegram=fake_telegram))
    add_order(service)
    return service


def _signed_post(client: TestClient, fake: FakeTwilio, path: str, form: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(path, data=form, headers={"X-Twilio-Signature": fake.sign(PUBLIC_URL + path, form)})


def _inbound(service: Service) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id))).all())


def test_recorded_twilio_sms_webhook(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    response = _signed_post(client, fake_twilio, "/webhooks/twilio", fixture("twilio", "inbound_sms.json"))
    assert response.status_code == 200
    [message] = _inbound(service)
    assert (message.channel, message.text, message.intent) == ("sms", "Where is my order?", "wismo")


def test_recorded_whatsapp_media_webhook(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    form = fixture("twilio", "inbound_whatsapp_media.json")
    assert _signed_post(client, fake_twilio, "/webhooks/twilio", form).status_code == 200
    [message] = _inbound(service)
    assert message.channel == "whatsapp" and message.media_urls == [form["MediaUrl0"]]


def test_recorded_63016_status_callback_falls_back_to_sms(client: TestClient, service: Service,
                                                         fake_twilio: FakeTwilio) -> None:
    _signed_post(client, fake_twilio, "/webhooks/twilio", fixture("twilio", "inbound_whatsapp_media.json"))
    drain(Dispatcher(service.db, service.settings))
    [whatsapp] = fake_twilio.messages
    form = {k: (whatsapp["sid"] if v == "SMREPLACED" else v) for k, v in fixture("twilio", "status_undelivered_63016.json").items()}
    assert _signed_post(client, fake_twilio, "/webhooks/twilio/status", form).status_code == 200
    drain(Dispatcher(service.db, service.settings))
    assert [m["to"] for m in fake_twilio.messages] == [f"whatsapp:{ASHA}", ASHA]


def test_recorded_21610_error_maps_to_opted_out() -> None:
    from twilio.base.exceptions import TwilioRestException

    from integrations.twilio_channel import map_twilio_error

    body = fixture("twilio", "error_21610.json")
    error = map_twilio_error(TwilioRestException(body["status"], "/Messages.json", body["message"], body["code"]))
    assert isinstance(error, RecipientOptedOut) and error.code == "21610"


def test_recorded_telegram_updates(client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    with service.db.session() as session:
        token = session.exec(select(Customer.telegram_link_token).where(Customer.phone == ASHA)).one()
    start = fixture("telegram", "update_start_deeplink.json")
    start["message"]["text"] = f"/start {token}"
    assert client.post("/webhooks/telegram", json=start, headers=headers).status_code == 200
    assert client.post("/webhooks/telegram", json=fixture("telegram", "update_callback_query.json"),
                       headers=headers).status_code == 200
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        assert customer.telegram_chat_id == "424242"
        # The STOP button opted Asha out of Telegram, with one confirmation.
        assert customer.opted_out_channels == ["telegram"]
    drain(Dispatcher(service.db, service.settings))
    assert [m["text"].split(" ")[0] for m in fake_telegram.sent_to(424242)] == ["Hi", "You're"]


def test_recorded_telegram_contact_links_by_phone(client: TestClient, service: Service) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    assert client.post("/webhooks/telegram", json=fixture("telegram", "update_contact.json"),
                       headers=headers).status_code == 200
    with service.db.session() as session:
        assert session.exec(select(Customer.telegram_chat_id).where(Customer.phone == ASHA)).one() == "424243"


def test_fake_telegram_speaks_the_recorded_429_and_aiogram_obeys_it(service: Service, fake_telegram: FakeTelegram) -> None:
    recorded = fixture("telegram", "error_429.json")
    assert fake_telegram._error(429, 7).body == json.dumps(recorded, separators=(",", ":")).encode()
    clock = Clock()
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        customer.telegram_chat_id = "424242"
        enqueue_message(session=session, customer=customer, channel="telegram", text="hi", now=clock())
    fake_telegram.fail_next(429, retry_after=7)
    asyncio.run(Dispatcher(service.db, service.settings, clock=clock).run_once_and_close())
    with service.db.session() as session:
        row = session.exec(select(Outbox)).one()
        assert row.status == "pending" and row.due_at >= clock.now + timedelta(seconds=7)
