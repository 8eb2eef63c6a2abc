"""POST /webhooks/twilio and /webhooks/twilio/status: signatures, dedupe, bad input, status callbacks."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import ASHA, PUBLIC_URL, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service)
    return service


def _inbound(client: TestClient, fake: FakeTwilio, body: str, *, from_: str = ASHA, sid: str | None = None,
             media: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    form, headers = fake.inbound(PUBLIC_URL, from_=from_, body=body, sid=sid, media=media)
    return client.post("/webhooks/twilio", data=form, headers=headers)


def _messages(service: Service, direction: str) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.direction == direction).order_by(col(Message.id))).all())


def test_signed_sms_is_stored_acknowledged_with_empty_twiml_and_answered(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    response = _inbound(client, fake_twilio, "where is my order", sid="SMwismo1")
    assert response.status_code == 200
    assert response.text == TWIML
    assert response.headers["content-type"].startswith("application/xml")
    [inbound] = _messages(service, "in")
    assert (inbound.channel, inbound.status, inbound.intent) == ("sms", "processed", "wismo")
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    assert "A1001" in sent["body"] and sent["from"] == "+15005550006"
    assert sent["status_callback"] == PUBLIC_URL + "/webhooks/twilio/status"
    # The real twilio client went to the fake because every Twilio host was rewritten.
    assert {r["host"] for r in fake_twilio.requests} == {fake_twilio.url.removeprefix("http://")}
    [reply] = _messages(service, "out")
    assert reply.status == "queued" and reply.provider_message_id == sent["sid"]


def test_whatsapp_sender_is_the_whatsapp_channel_and_media_is_kept(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM1/Media/ME1"
    response = _inbound(client, fake_twilio, "the box arrived damaged", from_=f"whatsapp:{ASHA}", media=(photo,))
    assert response.status_code == 200
    [inbound] = _messages(service, "in")
    assert inbound.channel == "whatsapp" and inbound.media_urls == [photo]


@pytest.mark.parametrize("tamper", ["forged", "missing", "other-url", "changed-body"])
def test_bad_signature_is_403_and_stores_nothing(client: TestClient, service: Service, fake_twilio: FakeTwilio,
                                                 tamper: str) -> None:
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order")
    if tamper == "forged":
        headers = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    elif tamper == "missing":
        headers = {}
    elif tamper == "other-url":
        _, headers = fake_twilio.inbound("https://evil.example.com", from_=ASHA, body="where is my order",
                                         sid=form["MessageSid"])
    else:
        form = {**form, "Body": "cancel my order"}
    response = client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status_code == 403
    assert "signature" in response.json()["detail"].lower()
    assert _messages(service, "in") == []


def test_signature_made_with_another_auth_token_is_refused(client: TestClient, service: Service) -> None:
    other = FakeTwilio(auth_token="someone-elses-token")
    form, headers = other.inbound(PUBLIC_URL, from_=ASHA, body="hi")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 403
    assert _messages(service, "in") == []


def test_same_message_sid_twice_is_handled_once(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    first = _inbound(client, fake_twilio, "where is my order", sid="SMdup")
    second = _inbound(client, fake_twilio, "where is my order", sid="SMdup")
    assert first.status_code == second.status_code == 200 and second.text == TWIML
    assert len(_messages(service, "in")) == 1
    assert len(_messages(service, "out")) == 1


@pytest.mark.parametrize("case", ["empty", "10k", "nul", "invalid-utf8", "json"])
def test_bad_bodies_never_500(client: TestClient, service: Service, fake_twilio: FakeTwilio, case: str) -> None:
    if case in {"empty", "invalid-utf8", "json"}:
        raw = {"empty": b"", "invalid-utf8": b"Body=\xff\xfe&From=%2B919812345678", "json": b'{"Body": "hi"}'}[case]
        content_type = "application/json" if case == "json" else "application/x-www-form-urlencoded"
        response = client.post("/webhooks/twilio", content=raw,
                               headers={"Content-Type": content_type, "X-Twilio-Signature": "AAAA"})
        assert response.status_code == 403
        assert _messages(service, "in") == []
        return
    body = "a" * 10_000 if case == "10k" else "where\x00 is my\x00 order"
    response = _inbound(client, fake_twilio, body)
    assert response.status_code == 200
    [stored] = _messages(service, "in")
    assert "\x00" not in stored.text
    assert len(stored.text) <= 4096
    if case == "nul":
        assert stored.text == "where is my order"


def test_signed_but_unusable_sender_gets_400(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    response = _inbound(client, fake_twilio, "hi", from_="not-a-number")
    assert response.status_code == 400 and "From" in response.json()["detail"]
    assert _messages(service, "in") == []


# ---------------------------------------------------------------- status callbacks


def _send_one_reply(client: TestClient, service: Service, fake: FakeTwilio, from_: str = ASHA) -> dict:  # type: ignore[type-arg]
    _inbound(client, fake, "where is my order", from_=from_)
    drain(Dispatcher(service.db, service.settings))
    return fake.messages[-1]


def _status_of(service: Service, sid: str) -> Message:
    with service.db.session() as session:
        return session.exec(select(Message).where(Message.provider_message_id == sid)).one()


def test_status_moves_forward_only(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    sent = _send_one_reply(client, service, fake_twilio)
    for status, expected in [("sent", "sent"), ("delivered", "delivered"), ("sent", "delivered"),
                             ("queued", "delivered"), ("read", "read"), ("delivered", "read")]:
        response = _post_status(client, fake_twilio, sent, status)
        assert response.status_code == 200
        assert _status_of(service, sent["sid"]).status == expected


def _status_form(message: dict, status: str, error_code: str | None = None) -> dict[str, str]:  # type: ignore[type-arg]
    form = {"MessageSid": message["sid"], "MessageStatus": status, "AccountSid": "AC" + "0" * 32,
            "To": message["to"], "From": message["from"]}
    if error_code:
        form["ErrorCode"] = error_code
    return form


def _status_headers(fake: FakeTwilio, message: dict, status: str, error_code: str | None = None) -> dict[str, str]:  # type: ignore[type-arg]
    return {"X-Twilio-Signature": fake.sign(PUBLIC_URL + "/webhooks/twilio/status",
                                            _status_form(message, status, error_code))}


def _post_status(client: TestClient, fake: FakeTwilio, message: dict, status: str,  # type: ignore[type-arg]
                 error_code: str | None = None):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/twilio/status", data=_status_form(message, status, error_code),
                       headers=_status_headers(fake, message, status, error_code))


def test_failed_is_final_and_keeps_the_error_code(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    sent = _send_one_reply(client, service, fake_twilio)
    assert _post_status(client, fake_twilio, sent, "undelivered", "30003").status_code == 200
    assert _post_status(client, fake_twilio, sent, "delivered").status_code == 200
    message = _status_of(service, sent["sid"])
    assert (message.status, message.error_code) == ("undelivered", "30003")


def test_unknown_sid_gets_200_and_changes_nothing(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    ghost = {"sid": "SM" + "f" * 32, "to": ASHA, "from": "+15005550006"}
    assert _post_status(client, fake_twilio, ghost, "delivered").status_code == 200


def test_forged_status_callback_is_403(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    sent = _send_one_reply(client, service, fake_twilio)
    response = client.post("/webhooks/twilio/status", data=_status_form(sent, "failed", "30005"),
                           headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
    assert response.status_code == 403
    assert _status_of(service, sent["sid"]).status == "queued"


def test_21610_in_a_status_callback_marks_the_customer_opted_out(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    sent = _send_one_reply(client, service, fake_twilio)
    _post_status(client, fake_twilio, sent, "failed", "21610")
    with service.db.session() as session:
        assert session.exec(select(Customer).where(Customer.phone == ASHA)).one().opted_out_channels == ["sms"]


def test_63016_in_a_status_callback_resends_the_text_by_sms(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    sent = _send_one_reply(client, service, fake_twilio, from_=f"whatsapp:{ASHA}")
    assert sent["to"] == f"whatsapp:{ASHA}"
    assert _post_status(client, fake_twilio, sent, "undelivered", "63016").status_code == 200
    assert _post_status(client, fake_twilio, sent, "undelivered", "63016").status_code == 200  # Twilio retries
    drain(Dispatcher(service.db, service.settings))
    sms = [m for m in fake_twilio.messages if m["to"] == ASHA]
    assert len(sms) == 1 and sms[0]["body"] == sent["body"]
    with service.db.session() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message").order_by(col(Outbox.id))).all()
        assert [r.channel for r in rows] == ["whatsapp", "sms"]


def test_status_callback_with_bad_fields_is_400(client: TestClient, fake_twilio: FakeTwilio) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "exploded"}
    headers = {"X-Twilio-Signature": fake_twilio.sign(PUBLIC_URL + "/webhooks/twilio/status", form)}
    response = client.post("/webhooks/twilio/status", data=form, headers=headers)
    assert response.status_code == 400
    assert json.loads(response.text)["detail"]
