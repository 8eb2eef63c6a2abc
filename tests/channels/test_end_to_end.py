"""A two-way conversation on SMS, WhatsApp and Telegram through a real uvicorn
server on a free port (API, webhooks, dispatcher and scheduler in-process, as
`doorstep serve` runs them), with the real twilio and aiogram clients talking
to the fake providers. Also: the same webhook fired concurrently."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import col, select

from bot.app import create_app
from bot.core.models import Customer, Message
from bot.core.settings import Settings
from bot.service import Service
from tests.channels.conftest import ASHA, PUBLIC_URL, TELEGRAM_SECRET, add_order, new_service, with_channels
from tests.fakes.telegram_server import FakeTelegram, update
from tests.fakes.twilio_server import FakeTwilio, LoopbackServer

RAVI = "+919876543210"
CHAT = 880001
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@pytest.fixture
def running(settings: Settings, fake_twilio: FakeTwilio, fake_telegram: FakeTelegram) -> Iterator[tuple[Service, str]]:
    service = new_service(with_channels(settings, twilio=fake_twilio, telegram=fake_telegram))
    add_order(service)
    add_order(service, order_id="A1002", phone=RAVI, customer={"name": "Ravi", "channel": "whatsapp"})
    server = LoopbackServer(create_app(service=service, workers=True)).start()
    yield service, server.url
    server.stop()


def _twilio(url: str, fake: FakeTwilio, body: str, from_: str = ASHA, sid: str | None = None) -> httpx.Response:
    form, headers = fake.inbound(PUBLIC_URL, from_=from_, body=body, sid=sid)
    return httpx.post(url + "/webhooks/twilio", data=form, headers=headers, timeout=30)


def _wait(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def test_two_way_conversation_on_sms_whatsapp_and_telegram(
        running: tuple[Service, str], fake_twilio: FakeTwilio, fake_telegram: FakeTelegram) -> None:
    service, url = running

    # SMS: question -> answer, then STOP -> one confirmation, START -> back in.
    response = _twilio(url, fake_twilio, "where is my order")
    assert response.status_code == 200 and response.text == TWIML
    [answer] = _wait(lambda: fake_twilio.sent_to(ASHA))
    assert "A1001" in answer["body"] and answer["from"] == "+15005550006"
    _twilio(url, fake_twilio, "STOP")
    stop = _wait(lambda: fake_twilio.sent_to(ASHA)[1:])[0]
    assert "unsubscribed" in stop["body"]
    _twilio(url, fake_twilio, "START")
    assert "subscribed again" in _wait(lambda: fake_twilio.sent_to(ASHA)[2:])[0]["body"]

    # The delivery receipt comes back through the status callback.
    callback = fake_twilio.status_callback(answer, "delivered", deliver_to=url + "/webhooks/twilio/status")
    assert callback.status_code == 200
    with service.db.session() as session:
        assert session.exec(select(Message.status).where(Message.provider_message_id == answer["sid"])).one() == "delivered"

    # WhatsApp: Ravi writes, the answer goes back on WhatsApp (inside the 24 h window: free-form).
    _twilio(url, fake_twilio, "where is my order", from_=f"whatsapp:{RAVI}")
    [wa] = _wait(lambda: fake_twilio.sent_to(RAVI))
    assert wa["to"] == f"whatsapp:{RAVI}" and wa["from"] == "whatsapp:+14155238886" and "A1002" in wa["body"]

    # Telegram: the deep link from the order confirmation links the chat to Asha; then a question.
    with service.db.session() as session:
        token = session.exec(select(Customer.telegram_link_token).where(Customer.phone == ASHA)).one()
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    assert httpx.post(url + "/webhooks/telegram", json=update(CHAT, text=f"/start {token}"), headers=headers,
                      timeout=30).status_code == 200
    [hello] = _wait(lambda: fake_telegram.sent_to(CHAT), timeout=40)
    assert "connected" in hello["text"]
    httpx.post(url + "/webhooks/telegram", json=update(CHAT, text="where is my order"), headers=headers, timeout=30)
    answer_tg = _wait(lambda: fake_telegram.sent_to(CHAT)[1:])[0]
    assert "A1001" in answer_tg["text"]


def test_the_same_webhook_fired_concurrently_is_handled_once(
        running: tuple[Service, str], fake_twilio: FakeTwilio, fake_telegram: FakeTelegram) -> None:
    service, url = running
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order", sid="SMsame")
    tg_body = update(CHAT + 1, text="hello", update_id=999_001)
    tg_headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}

    def fire_twilio(_: int) -> int:
        return httpx.post(url + "/webhooks/twilio", data=form, headers=headers, timeout=60).status_code

    def fire_telegram(_: int) -> int:
        return httpx.post(url + "/webhooks/telegram", json=tg_body, headers=tg_headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(fire_twilio, range(6))) + list(pool.map(fire_telegram, range(6)))
    assert statuses == [200] * 12
    _wait(lambda: fake_twilio.sent_to(ASHA))
    _wait(lambda: fake_telegram.sent_to(CHAT + 1), timeout=40)
    time.sleep(1.5)  # give any duplicate the chance to show up
    assert len(fake_twilio.sent_to(ASHA)) == 1
    assert len(fake_telegram.sent_to(CHAT + 1)) == 1
    with service.db.session() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id))).all()
        assert sorted(m.provider_message_id or "" for m in inbound) == ["SMsame", "upd:999001"]
