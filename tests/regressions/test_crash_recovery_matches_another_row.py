"""Crash recovery must match exactly the message the crashed row sent, never another row's
message with the same text (that gave `UNIQUE constraint failed` and a reply two leases late).

The real twilio client against the fake Twilio on loopback; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio

from sqlmodel import select

from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import LEASE, Dispatcher
from bot.service import Service
from bot.store.outbox import enqueue_message
from tests.channels.conftest import ASHA, Clock, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

TEXT = "Your order is out for delivery"


def _service(settings: Settings, fake: FakeTwilio) -> Service:
    service = new_service(with_channels(settings, twilio=fake))
    with service.db.session() as session:
        session.add(Customer(phone=ASHA, name="Asha"))
    return service


def _queue(service: Service, clock: Clock) -> int:
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        message = enqueue_message(session=session, customer=customer, channel="sms", text=TEXT, now=clock())
        assert message is not None
        return message.id or 0


def _state(service: Service, message_id: int) -> tuple[str, str | None]:
    with service.db.read() as session:
        row = session.exec(select(Outbox).where(Outbox.message_id == message_id)).one()
        message = session.get(Message, message_id)
        assert message is not None
        return row.status, message.provider_message_id


def test_a_crashed_row_that_never_reached_twilio_is_sent_not_matched_to_an_earlier_same_text_message(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    earlier = _queue(service, clock)
    survivor = Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor")
    asyncio.run(survivor.run_once_and_close())
    assert _state(service, earlier)[0] == "sent"

    later = _queue(service, clock)  # the same words again, a second later
    Dispatcher(service.db, service.settings, clock=clock, worker_id="crashed").claim()  # ... and died
    clock.advance(seconds=LEASE.total_seconds() + 1)
    asyncio.run(survivor.run_once_and_close())  # one lease later, not two

    assert len(fake_twilio.messages) == 2
    status, provider_id = _state(service, later)
    assert status == "sent"
    assert provider_id == fake_twilio.messages[1]["sid"] != _state(service, earlier)[1]


def test_two_crashed_rows_with_the_same_text_each_get_their_own_message(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio)
    first, second = _queue(service, clock), _queue(service, clock)
    crashed = Dispatcher(service.db, service.settings, clock=clock, worker_id="crashed")
    claimed = crashed.claim()
    assert [c.message.message_id for c in claimed if c.message] == [first, second]
    sender = crashed.sender_for("message:sms")
    assert sender is not None and claimed[0].message is not None
    asyncio.run(sender.send(claimed[0].message))  # Twilio took the first ... and the worker died
    clock.advance(seconds=LEASE.total_seconds() + 1)
    asyncio.run(Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor").run_once_and_close())

    assert len(fake_twilio.messages) == 2  # the first reconciled, the second sent once
    assert _state(service, first) == ("sent", fake_twilio.messages[0]["sid"])
    assert _state(service, second) == ("sent", fake_twilio.messages[1]["sid"])
