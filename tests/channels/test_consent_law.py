"""Consent law (issue 17): US opt-out words on SMS, the consent ledger and its export (CLI-free: the API),
India DLT template ids on every SMS. Full pipeline; SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Customer
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store import consent
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

US = "+14155550123"
TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "templates"


@pytest.fixture
def service(settings: Settings) -> Service:
    service = new_service(settings)
    add_order(service)
    add_order(service, order_id="U1001", phone=US)
    return service


def say(service: Service, text: str, *, phone: str = US, channel: str = "sms") -> list[str]:
    handled = service.handle_inbound(InboundMessage(channel=channel, text=text, phone=phone,
                                                    provider_message_id=f"t-{uuid.uuid4()}"))
    return [m.template or "" for m in handled.replies]


def customer(service: Service, phone: str) -> Customer:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == phone)).one()


@pytest.mark.parametrize("word", ["CANCEL", "cancel", "Cancel.", "QUIT", "END", "REVOKE", "OPT OUT", "UNSUBSCRIBE"])
def test_a_bare_opt_out_word_on_a_us_sms_number_opts_out_with_one_confirmation(service: Service, word: str) -> None:
    assert say(service, word) == ["channels.opted_out"]
    assert customer(service, US).opted_out_channels == ["sms"]
    assert say(service, word) == []  # one confirmation, never a second


def test_cancel_elsewhere_still_asks_which_cancel(service: Service) -> None:
    assert say(service, "CANCEL", phone=ASHA) == ["channels.cancel_which"]  # India SMS
    assert say(service, "CANCEL", channel="whatsapp") == ["channels.cancel_which"]  # US, but WhatsApp
    assert customer(service, ASHA).opted_out_channels == [] and customer(service, US).opted_out_channels == []


def test_no_prompt_asks_for_a_bare_cancel() -> None:
    """US numbers: a customer told to "reply CANCEL" would unsubscribe; prompts use YES/NO, buttons or numbers."""
    asking = re.compile(r"\b(?:reply|send|text|type|responde|envía|bhejein)\b[^.?!]*\b(?-i:CANCEL)\b(?!\s+ORDER)", re.I)
    for path in TEMPLATES.glob("*/*.yml"):
        for key, text in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
            assert not asking.search(str(text)), f"{path.parent.name} {key} asks for CANCEL: {text}"


def test_every_consent_change_is_in_the_ledger_and_exported(client: TestClient, service: Service,
                                                             auth: dict[str, str]) -> None:
    say(service, "STOP")
    say(service, "START")
    say(service, "cancel")
    with service.db.session() as session:
        history = consent.history(session, customer(service, US).id or 0)
    assert [(e["channel"], e["consent"], e["source"], e["detail"]) for e in history] == [
        ("sms", "out", "keyword", "STOP"), ("sms", "in", "keyword", "START"), ("sms", "out", "keyword", "CANCEL")]

    response = client.get(f"/api/customers/{US}/consent", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["opted_out_channels"] == ["sms"]
    assert [e["consent"] for e in body["events"]] == ["out", "in", "out"] and all(e["at"] for e in body["events"])
    assert client.get(f"/api/customers/{US}/consent").status_code == 401
    assert client.get("/api/customers/+14155550999/consent", headers=auth).status_code == 404
    assert client.get("/api/customers/not-a-phone/consent", headers=auth).status_code == 422


def test_a_provider_opt_out_is_in_the_ledger(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service)
    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        enqueue_message(session=session, customer=asha, channel="sms", text="Your order shipped",
                        priority=PRIORITY_TRANSACTIONAL)
    fake_twilio.fail_next(400, 21610)
    drain(Dispatcher(service.db, service.settings))
    with service.db.session() as session:
        asha = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        assert asha.opted_out_channels == ["sms"]
        assert [(e["consent"], e["source"], e["detail"]) for e in consent.history(session, asha.id or 0)] == [
            ("out", "provider", "21610")]
