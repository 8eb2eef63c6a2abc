"""Choices on every channel (issue 17): WhatsApp quick-reply buttons and list pickers through Twilio's
Content API, taps read back as the flow's payloads, numbered choices on SMS, and
`doorstep whatsapp sync-templates` against the fake Content API. Real twilio client, both databases."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.core.models import Order
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store import content
from integrations import twilio_content
from tests.channels.conftest import ASHA, PUBLIC_URL, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

WHATSAPP = f"whatsapp:{ASHA}"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service, payment_method="cod", customer={"channel": "whatsapp"})
    return service


def _sync(service: Service) -> twilio_content.SyncReport:
    report = asyncio.run(twilio_content.sync(service.settings))
    with service.db.session() as session:
        content.save(session, report.synced)
    return report


def _say(client: TestClient, fake: FakeTwilio, body: str, *, from_: str = WHATSAPP,
         interactive: dict[str, str] | None = None) -> None:
    form, headers = fake.inbound(PUBLIC_URL, from_=from_, body=body, interactive=interactive)
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200


def _sent(service: Service, fake: FakeTwilio) -> dict[str, Any]:
    before = len(fake.messages)
    drain(Dispatcher(service.db, service.settings))
    assert len(fake.messages) > before, "nothing was sent"
    return fake.messages[-1]


def _order(service: Service) -> Order:
    with service.db.session() as session:
        return session.exec(select(Order).where(Order.order_id == "A1001")).one()


def test_sync_templates_is_idempotent_and_picks_up_approvals_and_category_changes(
        service: Service, fake_twilio: FakeTwilio) -> None:
    first = _sync(service)
    assert sorted(first.created) == sorted(d.name for d in twilio_content.definitions())
    assert sorted(first.submitted) == sorted(d.name for d in twilio_content.journey_definitions())
    buttons = fake_twilio.content_named("doorstep_buttons_2")["types"]["twilio/quick-reply"]
    assert [a["id"] for a in buttons["actions"]] == ["{{3}}", "{{5}}"]
    assert len(fake_twilio.content_named("doorstep_list_10")["types"]["twilio/list-picker"]["items"]) == 10

    # WhatsApp approves a utility template but files it under marketing.
    fake_twilio.approve("doorstep_delivered_en", category="MARKETING")
    second = _sync(service)
    assert (second.created, second.submitted) == ([], [])
    assert len(fake_twilio.contents) == len(twilio_content.definitions())
    with service.db.session() as session:
        assert content.categories(session)["doorstep_delivered_en"] == "marketing"
        usable = content.usable(session)
    assert "doorstep_delivered_en" in usable and "doorstep_reorder_en" not in usable  # still pending
    assert usable["doorstep_buttons_3"] == fake_twilio.content_named("doorstep_buttons_3")["sid"]


def test_cod_question_is_two_whatsapp_buttons_and_a_tap_confirms(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    _sync(service)
    _say(client, fake_twilio, "how much do I have to pay in cash?")
    asked = _sent(service, fake_twilio)
    assert asked["content_sid"] == fake_twilio.content_named("doorstep_buttons_2")["sid"], asked["body"]
    assert not asked["body"]
    variables = json.loads(asked["content_variables"])
    assert "A1001" in variables["1"]
    assert (variables["2"], variables["3"], variables["4"], variables["5"]) == \
        ("Yes", "/btn:affirm:yes", "No", "/btn:deny:no")

    recorded = json.loads((FIXTURES / "inbound_whatsapp_button.json").read_text())
    _say(client, fake_twilio, recorded["Body"],
         interactive={k: recorded[k] for k in ("ButtonText", "ButtonPayload")})
    assert _order(service).cod_status == "confirmed"
    assert "confirmed" in _sent(service, fake_twilio)["body"].lower()


def test_reschedule_days_are_a_whatsapp_list_and_a_row_tap_picks_the_day(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    _sync(service)
    _say(client, fake_twilio, "please deliver on another day")
    asked = _sent(service, fake_twilio)
    variables = json.loads(asked["content_variables"])
    rows = [(variables[str(i)], variables[str(i + 1)]) for i in range(3, len(variables), 2)]
    assert asked["content_sid"] == fake_twilio.content_named(f"doorstep_list_{len(rows)}")["sid"]
    assert 4 <= len(rows) <= 10 and variables["2"] == "Choose"
    label, payload = rows[1]
    day = date.fromisoformat(payload.removeprefix("/btn:reschedule:"))
    assert str(day.day) in label

    _say(client, fake_twilio, label, interactive={"ListId": payload, "ListTitle": label})
    read_back = json.loads(_sent(service, fake_twilio)["content_variables"])
    assert str(day.day) in read_back["1"] and read_back["3"] == "/btn:affirm:yes"
    _say(client, fake_twilio, "Yes", interactive={"ButtonText": "Yes", "ButtonPayload": "/btn:affirm:yes"})
    assert _order(service).delivery_date == day


def test_without_synced_templates_whatsapp_choices_are_numbered_text(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    _say(client, fake_twilio, "please deliver on another day")
    asked = _sent(service, fake_twilio)
    assert not asked["content_sid"] and "Reply 1 for" in asked["body"]
    _say(client, fake_twilio, "3")
    assert "Reply YES" in _sent(service, fake_twilio)["body"]


def test_sms_choices_are_numbered_and_a_typed_number_picks(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    _say(client, fake_twilio, "please deliver on another day", from_=ASHA)
    asked = _sent(service, fake_twilio)
    assert asked["to"] == ASHA and re.search(r"Reply 1 for \w+, \d+ \w+, 2 for .+ or [4-7] for \w+, \d+ \w+\.$",
                                             asked["body"]), asked["body"]
    _say(client, fake_twilio, "2", from_=ASHA)
    read_back = _sent(service, fake_twilio)["body"]
    assert "Reply YES" in read_back and "Reply 1 for" not in read_back  # yes/no needs no numbers
    _say(client, fake_twilio, "1", from_=ASHA)  # still read as the first choice: yes
    chosen = _order(service).delivery_date
    assert chosen is not None and chosen.strftime("%d").lstrip("0") in read_back


def test_recorded_list_reply_is_read_as_its_payload(service: Service) -> None:
    from integrations.twilio_webhooks import parse_inbound

    recorded = json.loads((FIXTURES / "inbound_whatsapp_list.json").read_text())
    parsed = parse_inbound(recorded, now=service.now())
    assert (parsed.channel, parsed.text) == ("whatsapp", "/btn:reschedule:2026-11-28")


@pytest.mark.parametrize(("code", "kind", "fallback"), [
    (63016, "WindowClosed", True),  # Meta 131047: re-engagement outside the 24-hour window
    (63024, "RecipientUnreachable", True),  # Meta 131026: the number cannot get WhatsApp messages
    (63018, "RetryAfter", False),  # Meta 131056: too many messages to this recipient
    (63049, "PermanentProviderError", False),  # Meta 131049: marketing message not delivered
])
def test_whatsapp_failures_map_to_the_typed_errors(code: int, kind: str, fallback: bool) -> None:
    from twilio.base.exceptions import TwilioRestException

    from bot.delivery.outcomes import outcome_for
    from integrations.twilio_channel import map_twilio_error

    error = map_twilio_error(TwilioRestException(400, "/Messages.json", "refused", code))
    assert type(error).__name__ == kind and getattr(error, "code", None) == str(code)
    outcome = outcome_for(error, attempts=1, max_attempts=5, retry_for=3600)
    assert (outcome.status == "fallback") is fallback
    if code == 63018:
        assert outcome.status == "retry" and (outcome.retry_in or 0) >= 60


def test_a_number_not_on_whatsapp_gets_the_message_by_sms(
        client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    _say(client, fake_twilio, "where is my order")
    fake_twilio.fail_next(400, 63024)
    drain(Dispatcher(service.db, service.settings))
    assert [m["to"] for m in fake_twilio.messages] == [ASHA]  # the WhatsApp try was refused, SMS went out
    assert "A1001" in fake_twilio.messages[0]["body"]


def test_choices_moved_to_sms_are_numbered_once(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    """A question with choices that goes by SMS instead of WhatsApp (the window closed before an agent's
    or a journey's message, or Twilio said 63016) carries its numbers exactly once."""
    _say(client, fake_twilio, "please deliver on another day")  # the WhatsApp list (as text: nothing synced)
    fake_twilio.fail_next(400, 63016)
    drain(Dispatcher(service.db, service.settings))
    [asked] = fake_twilio.sent_to(ASHA)
    assert asked["to"] == ASHA and asked["body"].count("Reply 1 for") == 1, asked["body"]


def test_choices_the_planner_moves_to_sms_are_numbered_once(service: Service, fake_twilio: FakeTwilio) -> None:
    from bot.core.models import Customer
    from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message

    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        queued = enqueue_message(session=session, customer=asha, channel="whatsapp", text="Which day suits you?",
                                 buttons=[("Mon", "/btn:reschedule:2026-11-30"), ("Tue", "/btn:reschedule:2026-12-01"),
                                          ("Wed", "/btn:reschedule:2026-12-02")], priority=PRIORITY_TRANSACTIONAL)
        assert queued is not None and queued.channel == "sms"  # outside the window, no approved template
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    assert sent["body"] == "Which day suits you? Reply 1 for Mon, 2 for Tue or 3 for Wed."
