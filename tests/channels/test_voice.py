"""Voice (Twilio Voice) end to end against a fake Twilio Voice on loopback: a COD confirmation nobody answered
by text becomes a call placed with the real twilio client; the fake posts the real call webhooks back
(answered / AnsweredBy, Digits, SpeechResult, CallStatus), signed; the answer goes through the same
classifier and flows as an SMS. Inbound calls answer "where is my order" by the caller's number.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.app import create_app
from bot.core.clock import FakeClock
from bot.core.models import Message, Order
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import ASHA, PUBLIC_URL, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_voice_server import FakeTwilioVoice, gather_of, spoken
from tests.journeys.conftest import ist
from tests.support.factories import order_payload

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
STRANGER = "+919800000001"


@pytest.fixture
def fake_voice() -> Iterator[FakeTwilioVoice]:
    fake = FakeTwilioVoice().start()
    yield fake
    fake.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(ist(23, 10))  # Monday 10:00 in Kolkata


@pytest.fixture
def service(settings: Settings, fake_voice: FakeTwilioVoice, clock: FakeClock) -> Service:
    return new_service(with_channels(settings, twilio=fake_voice, voice_calls=True), clock=clock)


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as test_client:
        yield test_client


def run_until(service: Service, clock: FakeClock, when: datetime, step: timedelta = timedelta(minutes=15)) -> None:
    """Advance the clock, ticking timers and the real dispatcher (real twilio client -> the fake) like `serve`."""
    dispatcher = Dispatcher(service.db, service.settings, clock=clock, kinds=("message",))
    while True:
        service.journeys.run_due_timers()
        while asyncio.run(dispatcher.run_once_and_close()):
            pass
        if clock() >= when:
            return
        clock.advance(min(step, when - clock()))


def post_order(client: TestClient, **overrides: Any) -> None:
    response = client.post("/api/orders", json=order_payload(**overrides), headers=AUTH)
    assert response.status_code in (200, 201), response.text


def order(client: TestClient, order_id: str = "A1001") -> dict[str, Any]:
    return dict(client.get(f"/api/orders/{order_id}", headers=AUTH).json())


def message_log(client: TestClient, order_id: str = "A1001") -> list[dict[str, Any]]:
    response = client.get(f"/api/orders/{order_id}/messages", headers=AUTH)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def cod_call(client: TestClient, service: Service, clock: FakeClock, fake: FakeTwilioVoice,
             **customer: Any) -> dict[str, Any]:
    """A COD order whose confirmation text got no answer: the reminder is a call, placed at 12:00."""
    post_order(client, payment_method="cod", customer=customer)
    run_until(service, clock, ist(23, 12, 30))
    [call] = fake.calls
    return call


def twiml(response: Any) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return str(response.text)


def test_no_answer_to_the_cod_text_places_a_call_with_the_real_client(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    post_order(client, payment_method="cod")
    run_until(service, clock, ist(23, 11, 45))
    assert fake_voice.calls == []  # the text had two hours to be answered
    assert "Reply YES" in fake_voice.sent_to(ASHA)[0]["body"]
    run_until(service, clock, ist(23, 12, 30))
    [call] = fake_voice.calls
    assert call["to"] == ASHA and call["machine_detection"] == "DetectMessageEnd"
    assert call["url"].startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/call?m=")
    assert call["status_callback"].startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/status?m=")
    assert len(fake_voice.sent_to(ASHA)) == 1  # the call is the reminder: no second text
    [logged] = [m for m in message_log(client) if m["channel"] == "voice"]
    assert logged["status"] == "sent" and "press 1" in logged["text"]


@pytest.mark.parametrize("answer", [{"digits": "1"}, {"speech": "yes"}, {"speech": "Yes, I confirm the order."}])
def test_a_keypress_or_yes_in_the_call_confirms_cod_like_the_sms_yes(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice,
        answer: dict[str, str]) -> None:
    call = cod_call(client, service, clock, fake_voice)
    greeting = twiml(fake_voice.answer(client, call))
    gather = gather_of(greeting)
    assert gather["input"] == "dtmf speech" and gather["language"] == "en-IN"
    said = [text for text, _ in spoken(greeting)]
    assert "press 1" in said[0] and "A1001" in said[0]
    assert order(client)["cod_status"] == "pending"

    read_back = twiml(fake_voice.gather(client, call, greeting, **answer))
    assert order(client)["cod_status"] == "confirmed"
    reply = spoken(read_back)[0][0]
    assert "confirmed" in reply.lower(), reply
    events = client.get("/api/events", headers=AUTH).json()
    assert "cod.confirmed" in [e["type"] for e in events["events"]]
    [heard] = voice_messages(service, "in")
    assert heard.intent in ("cod_confirm", "affirm") and heard.conversation_id is not None
    assert fake_voice.status(client, call, "completed", duration=40).status_code == 200
    run_until(service, clock, clock() + timedelta(minutes=1))
    [placed] = [m for m in message_log(client) if m["channel"] == "voice" and m["direction"] == "out"
                and "press 1" in m["text"]]
    assert placed["status"] == "delivered" and placed["error"] is None
    assert len(fake_voice.sent_to(ASHA)) == 1  # answered: no follow-up text; replies were spoken, not texted


def test_no_in_the_call_cancels_and_the_call_speaks_spanish(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    call = cod_call(client, service, clock, fake_voice, locale="es")
    greeting = twiml(fake_voice.answer(client, call))
    assert gather_of(greeting)["language"] == "es-ES"
    assert all(language == "es-ES" for _, language in spoken(greeting))
    assert "pulse 1" in spoken(greeting)[0][0]
    question = twiml(fake_voice.gather(client, call, greeting, digits="2"))
    said = spoken(question)
    assert "A1001" in said[0][0] and "1)" in said[0][0] and all(language == "es-ES" for _, language in said)
    assert not any("Algo más" in text for text, _ in said[:-1])  # a question is not followed by "anything else?"
    assert order(client)["cod_status"] == "pending"  # the cancel flow asks why first, as it does by SMS
    read_back = twiml(fake_voice.gather(client, call, question, digits="1"))  # 1) ordered by mistake
    assert order(client)["cod_status"] == "cancelled" and order(client)["status"] == "cancelled"
    assert "A1001" in spoken(read_back)[0][0]


@pytest.mark.parametrize("path", ["/webhooks/twilio/voice/call", "/webhooks/twilio/voice/gather",
                                  "/webhooks/twilio/voice/status", "/webhooks/twilio/voice"])
@pytest.mark.parametrize("signature", [None, "", "bad-signature"])
def test_a_bad_signature_is_403_and_changes_nothing(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice, path: str,
        signature: str | None) -> None:
    call = cod_call(client, service, clock, fake_voice)
    query = call["url"].split("?", 1)[1]
    params = {"CallSid": call["sid"], "AccountSid": fake_voice.account_sid, "From": ASHA, "To": call["from"],
              "CallStatus": "no-answer", "Digits": "1", "AnsweredBy": "human"}
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    response = client.post(f"{path}?{query}&t=1", data=params, headers=headers)
    assert response.status_code == 403
    # A genuine signature over other parameters does not carry over either.
    forged = {**params, "Digits": "2"}
    response = client.post(f"{path}?{query}&t=1", data=forged,
                           headers={"X-Twilio-Signature": fake_voice.sign(f"{PUBLIC_URL}{path}?{query}&t=1", params)})
    assert response.status_code == 403
    assert order(client)["cod_status"] == "pending"
    assert voice_messages(service, "in") == []
    [placed] = voice_messages(service, "out")
    assert placed.status == "sent" and placed.error_code is None
    assert len(fake_voice.sent_to(ASHA)) == 1


@pytest.mark.parametrize(("path", "left_out", "problem"), [
    ("/webhooks/twilio/voice/call", "CallSid", "CallSid is required"),
    ("/webhooks/twilio/voice/gather", "CallSid", "CallSid is required"),
    ("/webhooks/twilio/voice", "CallSid", "CallSid is required"),
    ("/webhooks/twilio/voice/status", "CallSid", "CallSid is required"),
    ("/webhooks/twilio/voice/status", "CallStatus", "CallStatus is required"),
])
def test_a_signed_form_without_its_call_fields_is_400_and_changes_nothing(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice, path: str,
        left_out: str, problem: str) -> None:
    call = cod_call(client, service, clock, fake_voice)
    query = call["url"].split("?", 1)[1]
    params = {"CallSid": call["sid"], "AccountSid": fake_voice.account_sid, "From": ASHA, "To": call["from"],
              "CallStatus": "completed", "Digits": "1", "AnsweredBy": "human"}
    params.pop(left_out)
    url = f"{path}?{query}&t=1"
    response = client.post(url, data=params, headers={"X-Twilio-Signature": fake_voice.sign(f"{PUBLIC_URL}{url}",
                                                                                               params)})
    assert (response.status_code, response.json()) == (400, {"detail": problem})
    assert order(client)["cod_status"] == "pending" and voice_messages(service, "in") == []
    [placed] = voice_messages(service, "out")
    assert placed.status == "sent" and placed.error_code is None


def test_an_answered_webhook_for_a_call_doorstep_did_not_place_is_400(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    call = cod_call(client, service, clock, fake_voice)
    params = {"CallSid": call["sid"], "AccountSid": fake_voice.account_sid, "From": ASHA, "To": call["from"]}
    url = "/webhooks/twilio/voice/call?m=999999"
    response = client.post(url, data=params, headers={"X-Twilio-Signature": fake_voice.sign(f"{PUBLIC_URL}{url}",
                                                                                               params)})
    assert (response.status_code, response.json()) == (400, {"detail": "an outbound call of Doorstep (m) is required"})


def voice_messages(service: Service, direction: str) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.channel == "voice", Message.direction == direction)
                                 .order_by(col(Message.id))))


def test_voice_calls_are_off_by_default(settings: Settings, fake_voice: FakeTwilioVoice, clock: FakeClock) -> None:
    service = new_service(with_channels(settings, twilio=fake_voice), clock=clock)
    with TestClient(create_app(service=service)) as client:
        post_order(client, payment_method="cod")
        run_until(service, clock, ist(23, 12, 30))
    assert fake_voice.calls == []
    assert ["Reminder" in m["body"] for m in fake_voice.sent_to(ASHA)] == [False, True]


def test_quiet_hours_hold_the_call_until_morning(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    # 20:30 in Kolkata: the text goes at once (news is not held), the reminder falls due at 22:30, inside the
    # quiet hours 21:00-08:00 (the agents' escalation comes at 08:30).
    clock.advance(timedelta(hours=10, minutes=30))
    post_order(client, payment_method="cod")
    run_until(service, clock, ist(24, 7, 45), step=timedelta(minutes=30))
    assert fake_voice.calls == []
    run_until(service, clock, ist(24, 8, 15))
    [call] = fake_voice.calls
    assert call["to"] == ASHA
    with service.db.session() as session:
        assert session.exec(select(Order)).one().cod_status == "pending"


def customers_count(service: Service) -> int:
    from bot.core.models import Customer

    with service.db.session() as session:
        return len(session.exec(select(Customer)).all())


def test_an_inbound_call_answers_where_is_my_order_for_the_callers_own_orders(
        client: TestClient, service: Service, fake_voice: FakeTwilioVoice) -> None:
    post_order(client)
    post_order(client, order_id="B2002", phone=STRANGER, customer={"name": "Ravi"})
    assert client.post("/api/orders/A1001/events", headers=AUTH,
                       json={"type": "shipped", "at": "2026-11-23T04:00:00Z", "eta": "2026-11-26"}).status_code == 201
    call, response = fake_voice.incoming(client, PUBLIC_URL, from_=ASHA)
    answer = twiml(response)
    said = " ".join(text for text, _ in spoken(answer))
    assert "A1001" in said and "B2002" not in said and "Ravi" not in said
    assert gather_of(answer)["input"] == "dtmf speech"
    # A follow-up question in the same call goes through the flows too.
    follow_up = twiml(fake_voice.gather(client, call, answer, speech="when will it arrive"))
    assert "A1001" in " ".join(text for text, _ in spoken(follow_up))
    heard = voice_messages(service, "in")
    assert [m.text for m in heard] == ["where is my order", "when will it arrive"]
    assert {m.intent for m in heard} == {"wismo"}
    # The call does not move the conversation off text: an agent's answer later still goes by SMS.
    from bot.core.models import Conversation

    with service.db.session() as session:
        conversation = session.exec(select(Conversation).where(Conversation.customer_id == heard[0].customer_id)).one()
        assert conversation.channel == "sms"


@pytest.mark.parametrize("caller", ["+919811111111", "Anonymous", ""])
def test_an_unknown_caller_hears_a_polite_generic_message_and_nothing_is_stored(
        client: TestClient, service: Service, fake_voice: FakeTwilioVoice, caller: str) -> None:
    post_order(client)
    before = customers_count(service)
    call, response = fake_voice.incoming(client, PUBLIC_URL, from_=caller)
    answer = twiml(response)
    said = " ".join(text for text, _ in spoken(answer))
    assert "could not find an order for this phone number" in said and "A1001" not in said
    assert gather_of(answer) == {} and hangs_up(answer)
    assert customers_count(service) == before and voice_messages(service, "in") == []


def hangs_up(twiml_text: str) -> bool:
    from tests.fakes.twilio_voice_server import parse

    return parse(twiml_text).find("Hangup") is not None


def test_a_voicemail_leaves_a_short_message_and_the_text_follows(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    call = cod_call(client, service, clock, fake_voice)
    message = twiml(fake_voice.answer(client, call, answered_by="machine_end_beep"))
    said = spoken(message)
    assert len(said) == 1 and "A1001" in said[0][0] and "text message" in said[0][0]
    assert gather_of(message) == {} and hangs_up(message)
    assert fake_voice.status(client, call, "completed", answered_by="machine_end_beep").status_code == 200
    run_until(service, clock, clock() + timedelta(minutes=1))
    texts = fake_voice.sent_to(ASHA)
    assert len(texts) == 2 and "Reminder" in texts[1]["body"] and "Reply YES" in texts[1]["body"]
    [placed] = voice_messages(service, "out")
    assert placed.status == "delivered" and placed.error_code == "voicemail"
    assert placed.provider_message_id == call["sid"]
    # The text is answered like any COD question: "yes" by SMS confirms.
    form, headers = fake_voice.inbound(PUBLIC_URL, from_=ASHA, body="yes")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    assert order(client)["cod_status"] == "confirmed"


@pytest.mark.parametrize(("status", "code"), [("no-answer", "no-answer"), ("busy", "busy"), ("failed", "call-failed")])
def test_an_unanswered_call_is_logged_and_the_text_follows_once(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice, status: str,
        code: str) -> None:
    call = cod_call(client, service, clock, fake_voice)
    for _ in range(2):  # Twilio retries callbacks: one outcome, one text
        assert fake_voice.status(client, call, status).status_code == 200
    run_until(service, clock, clock() + timedelta(minutes=1))
    texts = fake_voice.sent_to(ASHA)
    assert len(texts) == 2 and "Reminder" in texts[1]["body"]
    [placed] = voice_messages(service, "out")
    assert placed.status == "failed" and placed.error_code == code
    [logged] = [m for m in message_log(client) if m["channel"] == "voice"]
    assert logged["status"] == "failed" and status in (logged["error"] or "")
    # The agents' escalation (still no confirmation, 12 h after the order) shows the call and its outcome.
    run_until(service, clock, ist(23, 22, 15), step=timedelta(hours=1))
    [listed] = client.get("/api/escalations?status=open", headers=AUTH).json()["items"]
    escalation = client.get(f"/api/escalations/{listed['id']}", headers=AUTH).json()
    assert escalation["reason"] == "needs_call"
    lines = [line for line in escalation["transcript"] if line["channel"] == "voice"]
    assert [(line["status"], line["error_code"]) for line in lines] == [("failed", code)]
    from tests.handoff.test_inbox import login

    with TestClient(create_app(service=service), base_url="https://testserver") as agent:  # secure cookies
        login(agent)
        page = agent.get(f"/inbox/escalations/{listed['id']}")
    assert page.status_code == 200 and f"call: {code}" in page.text


def test_an_answered_call_after_which_the_customer_hangs_up_sends_no_text(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    call = cod_call(client, service, clock, fake_voice)
    twiml(fake_voice.answer(client, call))
    assert fake_voice.status(client, call, "completed", duration=5).status_code == 200
    run_until(service, clock, clock() + timedelta(minutes=1))
    assert len(fake_voice.sent_to(ASHA)) == 1
    [placed] = voice_messages(service, "out")
    assert placed.status == "delivered" and placed.error_code is None
    assert order(client)["cod_status"] == "pending"


def event(client: TestClient, clock: FakeClock, type_: str, order_id: str = "A1001") -> None:
    response = client.post(f"/api/orders/{order_id}/events", headers=AUTH,
                           json={"type": type_, "at": clock().isoformat()})
    assert response.status_code == 201, response.text


def test_a_failed_attempt_left_unanswered_is_followed_by_a_call_that_reschedules(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    post_order(client)
    for type_ in ("shipped", "out_for_delivery", "failed_attempt"):
        event(client, clock, type_)
    run_until(service, clock, ist(23, 11, 45))
    assert "couldn't deliver" in fake_voice.sent_to(ASHA)[-1]["body"] and fake_voice.calls == []
    run_until(service, clock, ist(23, 12, 15))
    [call] = fake_voice.calls
    greeting = twiml(fake_voice.answer(client, call))
    assert "could not deliver your order A1001" in spoken(greeting)[0][0]
    read_back = twiml(fake_voice.gather(client, call, greeting, speech="please deliver it on Saturday"))
    said = [text for text, _ in spoken(read_back)]
    assert "Sat, 28 Nov" in said[0] and "A1001" in said[0]  # read back, to confirm like by text
    assert not any("anything else" in line for line in said[:-1]) and order(client)["delivery_date"] is None
    twiml(fake_voice.gather(client, call, read_back, speech="yes"))
    assert order(client)["delivery_date"] == "2026-11-28"  # Saturday after Monday 23 November
    events = client.get("/api/events", headers=AUTH).json()["events"]
    assert "delivery.rescheduled" in [e["type"] for e in events]


def test_a_failed_attempt_answered_by_text_gets_no_call(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    post_order(client)
    for type_ in ("shipped", "out_for_delivery", "failed_attempt"):
        event(client, clock, type_)
    run_until(service, clock, ist(23, 10, 30))
    form, headers = fake_voice.inbound(PUBLIC_URL, from_=ASHA, body="deliver it on Saturday")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    run_until(service, clock, ist(23, 13))
    assert fake_voice.calls == []
    assert "Sat, 28 Nov" in fake_voice.sent_to(ASHA)[-1]["body"]  # the text conversation goes on by text


def test_an_address_question_left_unanswered_is_followed_by_a_call(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    post_order(client, shipping_address={"line1": "MG Road", "postal_code": "560001"})
    assert order(client)["address_status"] == "needs_clarification"
    run_until(service, clock, ist(23, 12, 15))
    [call] = fake_voice.calls
    greeting = twiml(fake_voice.answer(client, call))
    assert "address for order A1001" in spoken(greeting)[0][0]
    read_back = twiml(fake_voice.gather(client, call, greeting, speech="it's 42"))
    assert spoken(read_back)[0][0]  # the address flow goes on by voice (it asks for the next missing part)
    assert [m.text for m in voice_messages(service, "in")] == ["it's 42"]


def test_an_unanswered_address_call_texts_the_question_again(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    post_order(client, shipping_address={"line1": "MG Road", "postal_code": "560001"})
    run_until(service, clock, ist(23, 12, 15))
    texts = fake_voice.sent_to(ASHA)  # the order confirmation, then the address question
    question = texts[-1]
    assert "house or flat number" in question["body"]
    [call] = fake_voice.calls
    assert fake_voice.status(client, call, "no-answer").status_code == 200
    run_until(service, clock, clock() + timedelta(minutes=1))
    assert [m["body"] for m in fake_voice.sent_to(ASHA)][len(texts):] == [question["body"]]


def test_a_cod_call_waiting_for_the_morning_is_not_placed_after_a_yes_by_text(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice) -> None:
    clock.advance(timedelta(hours=10, minutes=30))  # 20:30: the reminder's call is held until 08:00
    post_order(client, payment_method="cod")
    run_until(service, clock, ist(23, 23), step=timedelta(minutes=30))
    with service.db.session() as session:  # the reminder waits for the morning, as the call it will be
        from bot.core.models import JourneyTimer

        [timer] = session.exec(select(JourneyTimer).where(JourneyTimer.kind == "cod_reminder")).all()
        assert timer.status == "pending" and timer.due_at == ist(24, 8)
    form, headers = fake_voice.inbound(PUBLIC_URL, from_=ASHA, body="yes")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    run_until(service, clock, ist(24, 8, 15), step=timedelta(minutes=30))
    assert fake_voice.calls == [] and order(client)["cod_status"] == "confirmed"
    assert voice_messages(service, "out") == []


def test_no_phone_number_speech_or_token_reaches_the_logs(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    call = cod_call(client, service, clock, fake_voice)
    greeting = twiml(fake_voice.answer(client, call))
    twiml(fake_voice.gather(client, call, greeting, speech="yes please, my secret word is marigold"))
    fake_voice.status(client, call, "completed")
    fake_voice.incoming(client, PUBLIC_URL, from_=ASHA)
    fake_voice.incoming(client, PUBLIC_URL, from_=STRANGER)
    client.post("/webhooks/twilio/voice", data={"CallSid": "CA1", "From": ASHA}, headers={"X-Twilio-Signature": "x"})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook refused" in logged  # the logs were captured
    for secret in (ASHA, ASHA.lstrip("+"), STRANGER, "marigold", fake_voice.auth_token):
        assert secret not in logged


@pytest.mark.parametrize(("locale", "language", "prompt", "speech"), [
    ("es", "es-ES", "pulse 1", "Sí, confirmo"), ("hi-Latn", "hi-IN", "1 dabaiye", "haan confirm karo")])
def test_speech_in_the_customers_language_confirms(
        client: TestClient, service: Service, clock: FakeClock, fake_voice: FakeTwilioVoice, locale: str,
        language: str, prompt: str, speech: str) -> None:
    call = cod_call(client, service, clock, fake_voice, locale=locale)
    greeting = twiml(fake_voice.answer(client, call))
    assert gather_of(greeting)["language"] == language and prompt in spoken(greeting)[0][0]
    read_back = twiml(fake_voice.gather(client, call, greeting, speech=speech))
    assert order(client)["cod_status"] == "confirmed"
    assert {lang for _, lang in spoken(read_back)} == {language}
