"""POST /webhooks/telegram (aiogram types and Dispatcher), linking chats to customers, set-webhook."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.app import create_app
from bot.core.models import Customer, Message
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import ASHA, TELEGRAM_SECRET, add_order, drain, new_service, with_channels
from tests.fakes.telegram_server import FakeTelegram, update

CHAT = 777001
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}


@pytest.fixture
def service(settings: Settings, fake_telegram: FakeTelegram) -> Service:
    service = new_service(with_channels(settings, telegram=fake_telegram))
    add_order(service)
    return service


def _customer(service: Service, phone: str = ASHA) -> Customer:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == phone)).one()


def _inbound(service: Service) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id))).all())


def _replies(service: Service, fake: FakeTelegram, chat: int = CHAT) -> list[dict]:  # type: ignore[type-arg]
    drain(Dispatcher(service.db, service.settings))
    return fake.sent_to(chat)


@pytest.mark.parametrize("secret", [None, "wrong-secret", TELEGRAM_SECRET[:-1], TELEGRAM_SECRET + "x"])
def test_wrong_or_missing_secret_is_403_and_stores_nothing(client: TestClient, service: Service,
                                                           secret: str | None) -> None:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    response = client.post("/webhooks/telegram", json=update(CHAT, text="hi"), headers=headers)
    assert response.status_code == 403
    assert _inbound(service) == []


def test_without_a_configured_secret_every_update_is_refused(settings: Settings, fake_telegram: FakeTelegram) -> None:
    service = new_service(with_channels(settings, telegram=fake_telegram, telegram_webhook_secret=""))
    with TestClient(create_app(service=service)) as client:
        response = client.post("/webhooks/telegram", json=update(CHAT, text="hi"), headers={})
    assert response.status_code == 403 and "TELEGRAM_WEBHOOK_SECRET" in response.json()["detail"]


def test_deep_link_start_links_the_chat_and_greets_the_customer(
        client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    token = _customer(service).telegram_link_token
    assert token
    response = client.post("/webhooks/telegram", json=update(CHAT, text=f"/start {token}"), headers=HEADERS)
    assert response.status_code == 200
    assert _customer(service).telegram_chat_id == str(CHAT)
    [stored] = _inbound(service)
    assert stored.text == "/start" and token not in stored.text  # the token is not kept in the transcript
    [reply] = _replies(service, fake_telegram)
    assert "connected" in reply["text"] and "Asha" in reply["text"]
    # The chat now talks as Asha: her order is found.
    client.post("/webhooks/telegram", json=update(CHAT, text="where is my order"), headers=HEADERS)
    assert "A1001" in _replies(service, fake_telegram)[-1]["text"]


def test_unknown_chat_is_asked_to_share_its_phone_then_linked_by_contact(
        client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    client.post("/webhooks/telegram", json=update(CHAT, text="where is my order"), headers=HEADERS)
    [ask] = _replies(service, fake_telegram)
    assert "share the phone number" in ask["text"]
    assert ask["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    client.post("/webhooks/telegram", json=update(CHAT, contact_phone="919812345678"), headers=HEADERS)
    assert _customer(service).telegram_chat_id == str(CHAT)
    assert "connected" in _replies(service, fake_telegram)[-1]["text"]


def test_somebody_elses_contact_links_nothing(client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    client.post("/webhooks/telegram", json=update(CHAT, contact_phone="+919812345678", contact_user_id=999),
                headers=HEADERS)
    assert _customer(service).telegram_chat_id is None
    assert "share the phone number" in _replies(service, fake_telegram)[-1]["text"]


def test_deep_link_of_a_customer_linked_elsewhere_does_not_move_them(
        client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    token = _customer(service).telegram_link_token
    client.post("/webhooks/telegram", json=update(CHAT, text=f"/start {token}"), headers=HEADERS)
    client.post("/webhooks/telegram", json=update(CHAT + 1, text=f"/start {token}"), headers=HEADERS)
    assert _customer(service).telegram_chat_id == str(CHAT)


def test_same_update_id_twice_is_stored_once(client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    body = update(CHAT, text="hello", update_id=424242)
    first = client.post("/webhooks/telegram", json=body, headers=HEADERS)
    second = client.post("/webhooks/telegram", json=body, headers=HEADERS)
    assert first.status_code == second.status_code == 200
    assert second.json()["duplicate"] is True
    assert len(_inbound(service)) == 1
    assert len(_replies(service, fake_telegram)) == 1


def test_button_press_is_a_message_and_the_spinner_is_answered(
        client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    token = _customer(service).telegram_link_token
    client.post("/webhooks/telegram", json=update(CHAT, text=f"/start {token}"), headers=HEADERS)
    response = client.post("/webhooks/telegram", json=update(CHAT, callback_data="/btn:wismo"), headers=HEADERS)
    assert response.status_code == 200
    assert _inbound(service)[-1].text == "/btn:wismo" and _inbound(service)[-1].intent == "wismo"
    assert any(name == "answerCallbackQuery" for name, _ in fake_telegram.calls)


@pytest.mark.parametrize(("body", "status"), [
    (b"", 400), (b"\xff\xfe\x00", 400), (b"[1, 2]", 400), (b'{"update_id": "x"}', 400),
    (b"update_id=1&message=hi", 400),
])
def test_bad_bodies_are_4xx_never_500(client: TestClient, service: Service, body: bytes, status: int) -> None:
    response = client.post("/webhooks/telegram", content=body,
                           headers={**HEADERS, "Content-Type": "application/json"})
    assert response.status_code == status
    assert _inbound(service) == []


def test_nul_bytes_and_huge_texts_are_cleaned(client: TestClient, service: Service) -> None:
    client.post("/webhooks/telegram", json=update(CHAT, text="hel\x00lo"), headers=HEADERS)
    client.post("/webhooks/telegram", json=update(CHAT, text="x" * 10_000), headers=HEADERS)
    texts = [m.text for m in _inbound(service)]
    assert texts[0] == "hello" and len(texts[1]) <= 4096


def test_group_chats_and_other_updates_are_ignored(client: TestClient, service: Service) -> None:
    response = client.post("/webhooks/telegram", json=update(-100123, text="hi all", chat_type="group"),
                           headers=HEADERS)
    assert response.status_code == 200 and response.json()["handled"] is False
    response = client.post("/webhooks/telegram", json={"update_id": 5, "poll": {"id": "1"}}, headers=HEADERS)
    assert response.status_code in {200, 400}
    assert _inbound(service) == []


def test_set_webhook_registers_url_and_secret(fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli.app import app
    from bot.core.settings import reset_settings_cache
    from tests.fakes.telegram_server import BOT_TOKEN

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_telegram.url)
    monkeypatch.setenv("DOORSTEP_PUBLIC_URL", "https://shop.example.com")
    reset_settings_cache()
    try:
        result = CliRunner().invoke(app, ["telegram", "set-webhook"])
    finally:
        reset_settings_cache()
    assert result.exit_code == 0, result.output
    assert "https://shop.example.com/webhooks/telegram" in result.output
    assert fake_telegram.webhook["url"] == "https://shop.example.com/webhooks/telegram"
    assert fake_telegram.webhook["secret_token"] == TELEGRAM_SECRET
    assert TELEGRAM_SECRET not in result.output and BOT_TOKEN not in result.output


def test_a_stopping_dispatcher_closes_the_telegram_session(service: Service, fake_telegram: FakeTelegram) -> None:
    """`serve` and `worker` stop without leaving aiogram's HTTP session (and its sockets) open."""
    import asyncio

    from bot.store.outbox import enqueue_message
    from integrations import telegram_channel

    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        customer.telegram_chat_id = str(CHAT)
        session.add(customer)
        enqueue_message(session=session, customer=customer, channel="telegram", text="hello")

    async def run() -> tuple[list[object], bool]:
        dispatcher = Dispatcher(service.db, service.settings)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run_forever(stop, idle_sleep=0.05))
        for _ in range(100):
            if fake_telegram.sent_to(CHAT):
                break
            await asyncio.sleep(0.05)
        sessions = [bot.session for bot in telegram_channel._bots.values()]
        stop.set()
        await task
        return sessions, all(k[0] != id(asyncio.get_running_loop()) for k in telegram_channel._bots)

    sessions, forgotten = asyncio.run(run())
    assert fake_telegram.sent_to(CHAT)[-1]["text"] == "hello"
    assert sessions and all(s._session is None or s._session.closed for s in sessions)  # type: ignore[attr-defined]
    assert forgotten
