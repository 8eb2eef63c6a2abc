"""A sender from a number range libphonenumber does not know yet is still answered.

Twilio has verified the `From` number: Doorstep answered 400 for ranges newer
than its phone metadata (`+1 555 000 1234`, `+91 11111 11111` are possible
numbers that are not "valid" today) and the customer never heard back. Inbound
senders need only be *possible* numbers; numbers a shop types stay strict.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.core.models import Message
from bot.core.phones import InvalidPhone, to_e164
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.channels.conftest import PUBLIC_URL, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    return new_service(with_channels(settings, twilio=fake_twilio))


@pytest.mark.parametrize("sender", ["+15550001234", "whatsapp:+911111111111"])
def test_a_possible_but_unlisted_number_gets_its_answer(client: TestClient, service: Service, fake_twilio: FakeTwilio,
                                                        sender: str) -> None:
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=sender, body="where is my order", sid=f"SM{sender[-6:]}")
    response = client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status_code == 200, response.text
    with service.db.read() as session:
        [inbound] = session.exec(select(Message).where(Message.direction == "in")).all()
    assert inbound.status == "processed"
    drain(Dispatcher(service.db, service.settings))
    number = sender.removeprefix("whatsapp:")
    assert fake_twilio.sent_to(number), "the customer got no answer"


def test_an_impossible_number_is_still_refused(client: TestClient, fake_twilio: FakeTwilio) -> None:
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_="+1555", body="hi", sid="SMshort")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 400


def test_numbers_a_shop_types_stay_strict() -> None:
    with pytest.raises(InvalidPhone):
        to_e164("+15550001234")
    assert to_e164("+15550001234", strict=False) == "+15550001234"
