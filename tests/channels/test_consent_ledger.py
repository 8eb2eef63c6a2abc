"""The consent ledger covers every channel: each opt-in and opt-out arrives through the real endpoint that
carries it (signed email events and the unsubscribe link, Viber callbacks, Telegram's 403 and /start, the
orders API) and is in the ledger with its source and time; erasure keeps no personal data in it; and no code
changes a customer's consent without going through `bot.store.consent.set_consent`. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from bot.app import create_app
from bot.core import replies
from bot.core.channels import InboundMessage
from bot.core.models import ConsentEvent, Customer, Message
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store import consent
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, TELEGRAM_SECRET, add_order, drain, new_service, with_channels
from tests.channels.test_email import ASHA_EMAIL, WHSEC, email_settings, post_reply, reply_to
from tests.conftest import TEST_API_KEY
from tests.fakes.smtp_server import FakeSMTP
from tests.fakes.telegram_server import BOT_ID, FakeTelegram, update
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.viber_server import AUTH_TOKEN, FakeViber, callback, user
from tests.support.factories import order_payload

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
CHAT = 777002
VIBER_USER = "0ConsentLedger9="
ROOT = Path(__file__).resolve().parents[2]
OPTED_IN = replies.render("channels.opted_in", "en", shop_name="Demo Shop")


@pytest.fixture
def service(settings: Settings, smtp: FakeSMTP, fake_twilio: FakeTwilio, fake_telegram: FakeTelegram,
            fake_viber: FakeViber) -> Service:
    configured = email_settings(settings, smtp, fake_twilio, viber_auth_token=SecretStr(AUTH_TOKEN),
                                viber_bot_name="Demo Shop", viber_chat_uri="demoshop",
                                viber_api_base_url=fake_viber.url)
    return new_service(with_channels(configured, telegram=fake_telegram))


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as test_client:
        yield test_client


def post_order(client: TestClient, **customer: Any) -> None:
    response = client.post("/api/orders", headers=AUTH,
                           json=order_payload(customer={"email": ASHA_EMAIL, **customer}))
    assert response.status_code in (200, 201), response.text


def asha(service: Service) -> Customer:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == ASHA)).one()


def ledger(client: TestClient) -> list[tuple[str, str, str]]:
    """The export a shop would hand over: (channel, in/out, source), oldest first."""
    response = client.get(f"/api/customers/{ASHA}/consent", headers=AUTH)
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert all(datetime.fromisoformat(e["at"]) for e in events)
    return [(e["channel"], e["consent"], e["source"]) for e in events]


def email_event(client: TestClient, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "content-type": "application/json",
               "webhook-signature": Webhook(WHSEC).sign(msg_id=msg_id, timestamp=now, data=body.decode())}
    response = client.post("/webhooks/email/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def send_all(service: Service) -> None:
    drain(Dispatcher(service.db, service.settings))


# ------------------------------------------------------------------ email


def test_the_unsubscribe_link_is_in_the_ledger_once(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    [email] = smtp.sent_to(ASHA_EMAIL)
    url = urlsplit(str(email["List-Unsubscribe"]).strip("<>"))
    client.get(f"{url.path}?{url.query}")  # a mail scanner opening the link is no opt-out
    assert ledger(client) == []
    for _ in range(2):  # a mail client's one-click POST (RFC 8058), then the page's button: one opt-out
        response = client.post(f"{url.path}?{url.query}", content=b"List-Unsubscribe=One-Click",
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200
    assert ledger(client) == [("email", "out", "email.unsubscribe")]
    assert client.get(f"/api/customers/{ASHA}/consent", headers=AUTH).json()["email_status"] == "unsubscribed"


def test_a_complaint_and_a_hard_bounce_are_opt_outs_and_a_soft_bounce_is_not(
        client: TestClient, service: Service) -> None:
    post_order(client)
    assert email_event(client, {"type": "bounce", "email": ASHA_EMAIL, "bounce_type": "transient"}) == {
        "addresses_marked": 0, "messages_updated": 0}
    assert ledger(client) == []
    assert email_event(client, {"type": "bounce", "email": ASHA_EMAIL.upper(), "bounce_type": "permanent"})[
        "addresses_marked"] == 1
    assert email_event(client, {"type": "complaint", "email": ASHA_EMAIL})["addresses_marked"] == 1
    # A bounce after the complaint changes nothing: the spam report stays the reason nothing goes there.
    assert email_event(client, {"type": "bounce", "email": ASHA_EMAIL})["addresses_marked"] == 0
    assert ledger(client) == [("email", "out", "email.bounce"), ("email", "out", "email.complaint")]
    assert asha(service).email_status == "complained"


def test_a_new_address_from_the_shop_is_an_opt_in_in_the_ledger(client: TestClient, service: Service) -> None:
    post_order(client)
    email_event(client, {"type": "bounce", "email": ASHA_EMAIL, "bounce_type": "permanent"})
    post_order(client)  # the same address again: no change
    post_order(client, email="asha.new@example.com")
    assert ledger(client) == [("email", "out", "email.bounce"), ("email", "in", "api")]
    assert asha(service).email_status is None


def test_stop_and_start_by_email_reply_are_keywords_in_the_ledger(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    [record] = smtp.sent_to(ASHA_EMAIL)
    post_reply(client, reply_to(record, "STOP"))
    send_all(service)
    assert asha(service).email_status == "unsubscribed"
    confirmations = smtp.sent_to(ASHA_EMAIL)[1:]
    assert len(confirmations) == 1  # the one confirmation (an answer to their own email still goes)
    post_reply(client, reply_to(record, "STOP"))  # a second STOP: no second row, no second confirmation
    send_all(service)
    assert len(smtp.sent_to(ASHA_EMAIL)) == 2
    post_reply(client, reply_to(record, "START"))
    send_all(service)
    assert asha(service).email_status is None
    assert ledger(client) == [("email", "out", "keyword"), ("email", "in", "keyword")]


def test_a_customer_unsubscribed_from_email_is_not_asked_for_a_rating_by_email(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    [record] = smtp.sent_to(ASHA_EMAIL)
    post_reply(client, reply_to(record, "I want to talk to a person"))
    [escalation] = client.get("/api/escalations", headers=AUTH).json()["items"]
    assert escalation["channel"] == "email"
    url = urlsplit(str(record["List-Unsubscribe"]).strip("<>"))
    client.post(f"{url.path}?{url.query}", content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"})
    resolved = client.post(f"/api/escalations/{escalation['id']}/resolve", json={"csat": True}, headers=AUTH)
    assert resolved.status_code == 200
    with service.db.session() as session:
        asked = session.exec(select(Message).where(Message.template == "csat.ask")).all()
    assert asked == []


# ------------------------------------------------------------------ Viber


def viber(client: TestClient, signed: tuple[bytes, dict[str, str]]) -> None:
    body, headers = signed
    assert client.post("/webhooks/viber", content=body, headers=headers).status_code == 200


def test_viber_unsubscribe_and_subscribe_are_in_the_ledger(client: TestClient, service: Service) -> None:
    post_order(client)
    token = asha(service).telegram_link_token
    viber(client, callback("conversation_started", type="open", context=token, user=user(VIBER_USER),
                           subscribed=False, message_token=1))
    viber(client, callback("unsubscribed", user_id=VIBER_USER, message_token=2))
    viber(client, callback("unsubscribed", user_id=VIBER_USER, message_token=3))  # a repeat: no second row
    assert "viber" in asha(service).opted_out_channels
    viber(client, callback("subscribed", user=user(VIBER_USER), message_token=4))
    assert ledger(client) == [("viber", "out", "viber.unsubscribed"), ("viber", "in", "viber.subscribed")]
    assert "viber" not in asha(service).opted_out_channels


# ------------------------------------------------------------------ Telegram


def telegram(client: TestClient, text: str) -> None:
    response = client.post("/webhooks/telegram", json=update(CHAT, text=text),
                           headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})
    assert response.status_code == 200, response.text


def test_blocking_the_telegram_bot_and_pressing_start_again_are_in_the_ledger(
        client: TestClient, service: Service, fake_telegram: FakeTelegram) -> None:
    post_order(client)
    telegram(client, f"/start {asha(service).telegram_link_token}")
    send_all(service)
    assert len(fake_telegram.sent_to(CHAT)) == 1  # linked and greeted
    with service.db.session() as session:
        enqueue_message(session=session, customer=session.get(Customer, asha(service).id), channel="telegram",
                        text="Your order shipped", priority=PRIORITY_TRANSACTIONAL)
    fake_telegram.fail_next(403)  # "Forbidden: bot was blocked by the user"
    send_all(service)
    assert asha(service).opted_out_channels == ["telegram"]

    telegram(client, "/start")  # unblocked and pressed Start
    send_all(service)
    assert asha(service).opted_out_channels == []
    assert ledger(client) == [("telegram", "out", "telegram.blocked"), ("telegram", "in", "telegram.start")]
    assert fake_telegram.sent_to(CHAT)[-1]["text"] == OPTED_IN
    telegram(client, "/start")  # a second /start is no second opt-in
    assert len(ledger(client)) == 2


def membership(status: str, update_id: int) -> dict[str, Any]:
    """Telegram's `my_chat_member` update: the user changed the bot's status in their private chat."""
    bot = {"id": BOT_ID, "is_bot": True, "first_name": "Doorstep"}
    member = {"status": status, "user": bot, **({"until_date": 0} if status == "kicked" else {})}
    return {"update_id": update_id, "my_chat_member": {
        "chat": {"id": CHAT, "type": "private", "first_name": "Asha"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "Asha"}, "date": int(datetime.now(UTC).timestamp()),
        "old_chat_member": {"status": "member" if status == "kicked" else "kicked", "user": bot,
                            **({"until_date": 0} if status != "kicked" else {})},
        "new_chat_member": member}}


def test_blocking_the_bot_is_an_opt_out_when_telegram_says_so(client: TestClient, service: Service) -> None:
    post_order(client)
    telegram(client, f"/start {asha(service).telegram_link_token}")
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    for update_id in (900001, 900001, 900002):  # Telegram retries; a repeat is no second opt-out
        response = client.post("/webhooks/telegram", json=membership("kicked", update_id), headers=headers)
        assert response.status_code == 200 and response.json()["handled"] is True
    assert asha(service).opted_out_channels == ["telegram"]
    # Unblocking alone is no opt-in (the customer has not said anything yet); Start is.
    assert client.post("/webhooks/telegram", json=membership("member", 900003), headers=headers).status_code == 200
    assert asha(service).opted_out_channels == ["telegram"]
    telegram(client, "/start")
    assert ledger(client) == [("telegram", "out", "telegram.blocked"), ("telegram", "in", "telegram.start")]
    # A chat nobody is linked to changes nothing.
    stranger = {**membership("kicked", 900004)}
    stranger["my_chat_member"]["chat"]["id"] = 123
    response = client.post("/webhooks/telegram", json=stranger, headers=headers)
    assert response.status_code == 200 and response.json()["handled"] is False


# ------------------------------------------------------------------ erasure


def test_erasure_keeps_the_ledger_without_personal_data(client: TestClient, service: Service) -> None:
    post_order(client)
    customer_id = asha(service).id
    add_order(service, order_id="A1002")
    service.handle_inbound(InboundMessage(channel="sms", text="STOP", phone=ASHA, provider_message_id="sm-erase-1"))
    email_event(client, {"type": "complaint", "email": ASHA_EMAIL})
    assert [e[2] for e in ledger(client)] == ["keyword", "email.complaint"]

    assert client.delete(f"/api/customers/{ASHA}", headers=AUTH).status_code == 200
    with service.db.session() as session:
        rows = list(session.exec(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)))
        kept = [(r.channel, r.consent, r.source, r.detail) for r in rows]
        erased = session.get(Customer, customer_id)
        assert erased is not None and erased.phone is None and erased.opted_out_channels == ["sms"]
    # What the shop can still show (an opt-out was honoured), with nothing that identifies the person.
    assert kept == [("sms", "out", "keyword", ""), ("email", "out", "email.complaint", "")]
    assert client.get(f"/api/customers/{ASHA}/consent", headers=AUTH).status_code == 404


# ------------------------------------------------------------------ nothing bypasses the ledger


def test_consent_state_is_only_written_by_the_ledger() -> None:
    """Every write of `opted_out_channels` or `email_status` outside bot/store/consent.py would be a consent
    change missing from the ledger (new customers start empty; erasure keeps both as they are)."""
    write = re.compile(r"\.(opted_out_channels|email_status)\s*(=(?!=)|\+=|\.append|\.remove|\.add|\.discard)")
    offenders = []
    for folder in ("bot", "integrations", "flows"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() in {"bot/store/consent.py"} or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if write.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_an_unknown_source_is_refused(service: Service) -> None:
    add_order(service)
    with service.db.session() as session, pytest.raises(ValueError, match="unknown consent source"):
        consent.set_consent(session, session.exec(select(Customer)).one(), "sms", opted_out=True,
                            source="email.complain")
