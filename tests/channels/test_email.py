"""The email channel end to end: order records through a real SMTP server (aiosmtpd) on loopback, the
one-click unsubscribe link, bounces and complaints, and replies by email through the same classifier and
flows. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook

from bot.app import create_app
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import ASHA, drain, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.smtp_server import SMTP_PASSWORD, SMTP_USER, FakeSMTP
from tests.fakes.twilio_server import FakeTwilio
from tests.support.factories import order_payload

ASHA_EMAIL = "asha.k@example.com"
WHSEC = "whsec_" + base64.b64encode(b"email-webhook-secret-0123456789").decode()
LINK_SECRET = "email-link-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def email_settings(settings: Settings, smtp: FakeSMTP, twilio: FakeTwilio, **extra: object) -> Settings:
    values: dict[str, object] = {
        "quiet_hours": "", "email_smtp_host": "127.0.0.1", "email_smtp_port": smtp.port, "email_smtp_security": "none",
        "email_smtp_username": SMTP_USER, "email_smtp_password": SecretStr(SMTP_PASSWORD),
        "email_from": "Demo Shop <orders@shop.example>", "email_reply_domain": "reply.shop.example",
        "email_link_secret": SecretStr(LINK_SECRET), "email_webhook_secret": SecretStr(WHSEC),
        "shop_name": "Demo Shop", **extra}
    return with_channels(settings, twilio=twilio, **values)


@pytest.fixture
def service(settings: Settings, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> Service:
    return new_service(email_settings(settings, smtp, fake_twilio))


def post_order(client: TestClient, **overrides: Any) -> None:
    customer = {"email": ASHA_EMAIL, **overrides.pop("customer", {})}
    response = client.post("/api/orders", json=order_payload(customer=customer, **overrides), headers=AUTH)
    assert response.status_code in (200, 201), response.text


def event(client: TestClient, type_: str, order_id: str = "A1001") -> None:
    response = client.post(f"/api/orders/{order_id}/events", headers=AUTH,
                           json={"type": type_, "at": datetime.now(UTC).isoformat()})
    assert response.status_code == 201, response.text


def send_all(service: Service) -> None:
    drain(Dispatcher(service.db, service.settings))


def signed(body: bytes, **headers: str) -> dict[str, str]:
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    signature = Webhook(WHSEC).sign(msg_id=msg_id, timestamp=now, data=body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
            **headers}


def reply_to(original: EmailMessage, text: str, *, sender: str = ASHA_EMAIL, to: str | None = None) -> bytes:
    """A customer's reply as their mail client writes it: quoted history under an attribution line."""
    reply = EmailMessage()
    reply["From"] = f"Asha K <{sender}>"
    reply["To"] = to or str(original["Reply-To"])
    reply["Subject"] = "Re: " + str(original["Subject"])
    reply["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    reply["In-Reply-To"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in original.get_body(("plain",)).get_content().splitlines())
    reply.set_content(f"{text}\n\nOn Mon, 23 Nov 2026 at 10:00, Demo Shop wrote:\n{quoted}\n")
    return bytes(reply)


def post_reply(client: TestClient, raw: bytes) -> dict[str, Any]:
    response = client.post("/webhooks/email/inbound", content=raw,
                           headers=signed(raw, **{"content-type": "message/rfc822"}))
    assert response.status_code == 200, response.text
    return dict(response.json())


def customer(service: Service) -> Customer:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == ASHA)).one()


def email_log(service: Service) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.channel == "email").order_by(col(Message.id))))


def parts(message: EmailMessage) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


# ------------------------------------------------------------------ records out


def test_order_confirmation_email_has_the_full_order_in_html_and_text(
        client: TestClient, service: Service, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> None:
    post_order(client, items=[{"sku": "TS-M", "name": "T-shirt", "qty": 2, "price": "499.00"},
                              {"sku": "MUG", "name": "Coffee mug", "qty": 1, "price": "250.00"}], total="1248.00")
    send_all(service)

    [email] = smtp.sent_to(ASHA_EMAIL)
    assert email["Subject"] == "Your Demo Shop order A1001 is confirmed"
    assert email["From"] == "Demo Shop <orders@shop.example>"
    text, html = parts(email)
    for body in (text, html):
        assert "T-shirt" in body and "Coffee mug" in body
        assert "1,248.00" in body  # the total, in the customer's format
        assert "12 MG Road" in body and "560001" in body
    assert "2 x T-shirt" in text and "2 &times; T-shirt" in html
    # The chat channel still gets its short message: email is the record, not a replacement.
    assert len(fake_twilio.sent_to(ASHA)) == 1
    [logged] = email_log(service)
    assert logged.status == "sent" and logged.template == "email.order_confirmation"
    assert logged.provider_message_id == str(email["Message-ID"]).strip("<>")


def test_shipping_update_has_the_tracking_link_and_unsubscribe_headers(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    event(client, "confirmed")
    event(client, "packed")
    event(client, "shipped")
    send_all(service)

    shipped = [m for m in smtp.sent_to(ASHA_EMAIL) if "shipped" in str(m["Subject"])]
    assert len(shipped) == 1
    text, html = parts(shipped[0])
    assert "https://track.example.com/DL123" in text
    assert 'href="https://track.example.com/DL123"' in html
    assert "Delhivery DL123" in text
    unsubscribe = str(shipped[0]["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://doorstep.example.com/email/unsubscribe?token=")
    assert shipped[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(shipped[0]["Reply-To"]).startswith("reply+") and str(shipped[0]["Reply-To"]).endswith(
        "@reply.shop.example")


def test_records_are_in_the_customers_language(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client, customer={"locale": "es"}, currency="EUR", total="45.00")
    send_all(service)
    [email] = smtp.sent_to(ASHA_EMAIL)
    assert email["Subject"] == "Tu pedido A1001 de Demo Shop está confirmado"
    text, html = parts(email)
    assert "Dirección de entrega" in text and "45,00" in text and 'lang="es"' in html
    assert "Darse de baja" in html


def test_email_as_the_preferred_channel_sends_one_email_and_no_sms(
        client: TestClient, service: Service, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> None:
    post_order(client, customer={"channel": "email"})
    send_all(service)
    [email] = smtp.sent_to(ASHA_EMAIL)
    assert "A1001" in str(email["Subject"]) and "T-shirt" in parts(email)[0]
    assert fake_twilio.sent_to(ASHA) == []


def test_customer_without_an_email_gets_no_email(client: TestClient, service: Service, smtp: FakeSMTP,
                                                 fake_twilio: FakeTwilio) -> None:
    post_order(client, customer={"email": None})
    send_all(service)
    assert smtp.received == [] and len(fake_twilio.sent_to(ASHA)) == 1


# ------------------------------------------------------------------ unsubscribe, bounces, complaints


def _unsubscribe_path(email: EmailMessage) -> str:
    url = str(email["List-Unsubscribe"]).strip("<>")
    parts_ = urlsplit(url)
    return f"{parts_.path}?{parts_.query}"


def test_one_click_unsubscribe_stops_records_but_not_the_sms(
        client: TestClient, service: Service, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> None:
    post_order(client)
    send_all(service)
    [email] = smtp.sent_to(ASHA_EMAIL)
    path = _unsubscribe_path(email)

    page = client.get(path)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200 and "<form" in page.text
    assert customer(service).email_status is None

    # What a mail client's unsubscribe button sends (RFC 8058).
    response = client.post(path, content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "no more emails" in response.text
    assert customer(service).email_status == "unsubscribed"

    event(client, "confirmed")
    event(client, "packed")
    event(client, "shipped")
    send_all(service)
    assert len(smtp.sent_to(ASHA_EMAIL)) == 1  # no shipping email
    assert any("shipped" in m["body"] for m in fake_twilio.sent_to(ASHA))


@pytest.mark.parametrize("token", ["", "1-" + "0" * 24, "1-abc", "not-a-token", "2" * 80])
def test_a_forged_unsubscribe_link_changes_nothing(client: TestClient, service: Service, token: str) -> None:
    post_order(client)
    response = client.post(f"/email/unsubscribe?token={token}")
    assert response.status_code == 400
    assert customer(service).email_status is None


def test_unsubscribe_token_of_one_customer_does_not_unsubscribe_another(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    post_order(client, order_id="B2002", phone="+919876543210",
               customer={"name": "Ravi", "email": "ravi@example.com"})
    send_all(service)
    [to_asha] = smtp.sent_to(ASHA_EMAIL)
    asha_signature = _unsubscribe_path(to_asha).split("token=")[1].split("-")[1]
    with service.db.session() as session:
        ravi = session.exec(select(Customer).where(Customer.name == "Ravi")).one()
    assert client.post(f"/email/unsubscribe?token={ravi.id}-{asha_signature}").status_code == 400
    with service.db.session() as session:
        assert all(c.email_status is None for c in session.exec(select(Customer)))


def _event(client: TestClient, payload: dict[str, Any], *, sign: bool = True) -> Any:
    import json

    body = json.dumps(payload).encode()
    headers = signed(body) if sign else {}
    return client.post("/webhooks/email/events", content=body, headers={**headers, "content-type": "application/json"})


def test_permanent_bounce_marks_the_address_and_fails_the_message(
        client: TestClient, service: Service, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> None:
    post_order(client)
    send_all(service)
    [email] = smtp.sent_to(ASHA_EMAIL)
    response = _event(client, {"type": "bounce", "email": "Asha.K@Example.com", "bounce_type": "permanent",
                               "message_id": str(email["Message-ID"])})
    assert response.status_code == 200 and response.json() == {"addresses_marked": 1, "messages_updated": 1}
    assert customer(service).email_status == "bounced"
    [logged] = email_log(service)
    assert logged.status == "failed" and logged.error_code == "permanent-bounce"

    event(client, "confirmed")
    event(client, "packed")
    event(client, "shipped")
    send_all(service)
    assert len(smtp.sent_to(ASHA_EMAIL)) == 1


def test_transient_bounce_leaves_the_address_and_a_complaint_marks_it(client: TestClient, service: Service) -> None:
    post_order(client)
    assert _event(client, {"type": "bounce", "email": ASHA_EMAIL, "bounce_type": "transient"}).status_code == 200
    assert customer(service).email_status is None
    assert _event(client, {"type": "complaint", "email": ASHA_EMAIL}).status_code == 200
    assert customer(service).email_status == "complained"


def test_unsigned_or_invalid_events_are_refused(client: TestClient, service: Service) -> None:
    post_order(client)
    assert _event(client, {"type": "complaint", "email": ASHA_EMAIL}, sign=False).status_code == 401
    assert _event(client, {"type": "explode", "email": ASHA_EMAIL}).status_code == 422
    assert customer(service).email_status is None


# ------------------------------------------------------------------ SMTP answers


def test_a_deferral_is_retried_and_sent_later(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    smtp.refuse_next(451, "4.7.1 try again later")
    post_order(client)
    send_all(service)
    [logged] = email_log(service)
    assert logged.status == "queued" and smtp.received == []  # to be tried again after a backoff
    with service.db.session() as session:
        row = session.exec(select(Outbox).where(Outbox.message_id == logged.id)).one()
        assert row.status == "pending" and row.last_error and "451" in row.last_error
        row.due_at = datetime.now(UTC)  # the backoff has passed
        session.add(row)
    send_all(service)
    assert len(smtp.sent_to(ASHA_EMAIL)) == 1 and email_log(service)[0].status == "sent"


def test_a_refused_mailbox_fails_the_email(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    smtp.refuse_next(550, "5.1.1 no such mailbox")
    post_order(client)
    send_all(service)
    [logged] = email_log(service)
    assert logged.status == "failed" and logged.error_code == "550"


def test_wrong_smtp_password_fails_clearly(settings: Settings, smtp: FakeSMTP, fake_twilio: FakeTwilio) -> None:
    service = new_service(email_settings(settings, smtp, fake_twilio, email_smtp_password=SecretStr("wrong")))
    with TestClient(create_app(service=service)) as client:
        post_order(client)
        send_all(service)
    [logged] = email_log(service)
    assert logged.status == "failed" and "login refused" in (logged.error or "")
    assert smtp.received == []


# ------------------------------------------------------------------ replies in


def test_reply_by_email_reaches_the_conversation_and_is_answered_by_email(
        client: TestClient, service: Service, smtp: FakeSMTP, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    post_order(client)
    send_all(service)
    [confirmation] = smtp.sent_to(ASHA_EMAIL)

    result = post_reply(client, reply_to(confirmation, "where is my order?"))
    assert result == {"handled": True, "duplicate": False}
    send_all(service)

    inbound = [m for m in email_log(service) if m.direction == "in"]
    assert [m.text for m in inbound] == ["where is my order?"]  # the quoted history is not kept
    assert inbound[0].intent == "wismo"
    answer = smtp.sent_to(ASHA_EMAIL)[-1]
    assert answer is not confirmation and "A1001" in parts(answer)[0]
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    assert ASHA_EMAIL not in logged and ASHA not in logged and LINK_SECRET not in logged


def test_reply_without_reply_to_is_matched_through_the_thread(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    [confirmation] = smtp.sent_to(ASHA_EMAIL)
    raw = reply_to(confirmation, "where is my parcel", to="orders@shop.example")
    assert post_reply(client, raw)["handled"] is True
    assert post_reply(client, raw)["duplicate"] is True  # the provider retried: stored once


def test_cod_confirmation_by_email_reply(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client, payment_method="cod", customer={"channel": "email"})
    send_all(service)
    [question] = smtp.sent_to(ASHA_EMAIL)
    assert "cash on delivery" in parts(question)[0].lower()

    post_reply(client, reply_to(question, "Yes"))
    send_all(service)
    response = client.get("/api/orders/A1001", headers=AUTH)
    assert response.json()["cod_status"] == "confirmed"
    assert len(smtp.sent_to(ASHA_EMAIL)) == 2


@pytest.mark.parametrize("case", ["other_sender", "no_token", "forged_token"])
def test_a_reply_that_is_not_provably_the_customers_is_not_stored(
        client: TestClient, service: Service, smtp: FakeSMTP, case: str) -> None:
    post_order(client)
    send_all(service)
    [confirmation] = smtp.sent_to(ASHA_EMAIL)
    if case == "other_sender":  # somebody who saw the reply address, writing from their own mailbox
        raw = reply_to(confirmation, "cancel my order", sender="mallory@example.net")
    else:
        forged = EmailMessage()
        forged["From"] = ASHA_EMAIL  # From alone is easy to forge: the token is required too
        forged["To"] = "reply+1-" + "0" * 24 + "@reply.shop.example" if case == "forged_token" else "orders@shop.example"
        forged["Subject"] = "cancel"
        forged["Message-ID"] = "<forged@mail.example.com>"
        forged.set_content("cancel my order")
        raw = bytes(forged)
    assert post_reply(client, raw) == {"handled": False, "reason": "sender not recognised"}
    assert [m for m in email_log(service) if m.direction == "in"] == []


def test_unsigned_inbound_is_refused_and_auto_replies_are_dropped(
        client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    [confirmation] = smtp.sent_to(ASHA_EMAIL)
    raw = reply_to(confirmation, "where is my order?")
    response = client.post("/webhooks/email/inbound", content=raw, headers={"content-type": "message/rfc822"})
    assert response.status_code == 401
    tampered = signed(raw)
    response = client.post("/webhooks/email/inbound", content=raw + b"x", headers=tampered)
    assert response.status_code == 401

    auto = reply_to(confirmation, "I am out of the office until Monday.").replace(
        b"Subject:", b"Auto-Submitted: auto-replied\nSubject:", 1)
    assert post_reply(client, auto) == {"handled": False, "reason": "automatic reply"}
    assert [m for m in email_log(service) if m.direction == "in"] == []
    response = client.post("/webhooks/email/inbound", content=b"\xff\xfe", headers=signed(b"ok"))
    assert response.status_code == 400


def test_erasure_forgets_the_email_address(client: TestClient, service: Service, smtp: FakeSMTP) -> None:
    post_order(client)
    send_all(service)
    assert client.delete(f"/api/customers/{ASHA}", headers=AUTH).status_code == 200
    with service.db.session() as session:
        erased = session.exec(select(Customer)).one()
    assert erased.email is None
    assert all(ASHA_EMAIL not in (m.text + (m.provider_message_id or "")) for m in email_log(service))


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as test_client:
        yield test_client
