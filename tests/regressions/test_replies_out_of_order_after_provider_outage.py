"""A provider outage (Twilio answering 500, then refusing connections) must not reorder one
customer's replies, dead-letter them within 15 minutes, or deliver them hours late.

The real twilio client talks to the fake Twilio on loopback; the dispatcher and the service
share one injectable clock, so a 15-minute or 3-hour outage takes seconds. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core.channels import InboundMessage
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.outbox import enqueue_message
from tests.channels.conftest import ASHA, Clock, add_order, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import FakeTwilio

RAVI = "+919800000001"


def _service(settings: Settings, fake: FakeTwilio, clock: Clock) -> Service:
    clock.now = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # 11:30 in Kolkata: no quiet hours in the way
    service = new_service(with_channels(settings, twilio=fake), clock=clock)
    add_order(service)
    return service


def _say(service: Service, text: str, phone: str = ASHA) -> list[Message]:
    handled = service.handle_inbound(InboundMessage(channel="sms", text=text, phone=phone,
                                                    provider_message_id=f"SM{uuid.uuid4().hex}"))
    assert handled.replies, "the bot answers"
    return list(handled.replies)


def _once(dispatcher: Dispatcher) -> int:
    return asyncio.run(dispatcher.run_once_and_close())


def _rows(service: Service, messages: list[Message]) -> list[tuple[Outbox, Message]]:
    with service.db.read() as session:
        found = []
        for message in messages:
            row = session.exec(select(Outbox).where(Outbox.message_id == message.id)).one()
            fresh = session.get(Message, message.id)
            assert fresh is not None
            found.append((row, fresh))
        return found


def _settle(fake: FakeTwilio, dispatcher: Dispatcher) -> None:
    """Send whatever is due now (the order confirmation), so only the replies are left."""
    for _ in range(3):
        _once(dispatcher)
    fake.messages.clear()


def test_a_reply_in_backoff_holds_back_that_customers_later_replies_through_a_15_minute_outage(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio, clock)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    _settle(fake_twilio, dispatcher)
    started = clock.now

    fake_twilio.outage(500)
    first = _say(service, "where is my order")
    _once(dispatcher)  # the first reply fails: backoff
    clock.advance(seconds=20)
    second = _say(service, "when will it arrive")
    replies = first + second

    while clock.now - started < timedelta(minutes=15):
        if clock.now - started >= timedelta(minutes=7) and not fake_twilio.refused:
            fake_twilio.refuse_connections()  # the second half of the outage: connection refused
        _once(dispatcher)
        rows = _rows(service, replies)
        head, _ = rows[0]
        assert head.status == "pending", "the first reply keeps retrying, it is not dead-lettered"
        assert all(row.attempts == 0 for row, _ in rows[1:]), "a later reply was tried before the first went out"
        clock.advance(seconds=10)
    assert fake_twilio.messages == []
    assert _rows(service, replies)[0][0].attempts > 8  # the old attempt limit would have dead-lettered it

    fake_twilio.recover()
    for _ in range(12):  # at most a minute after the provider is back
        _once(dispatcher)
        clock.advance(seconds=5)
    assert [m["body"] for m in fake_twilio.sent_to(ASHA)] == [m.text for m in replies]
    assert {(row.status, message.status) for row, message in _rows(service, replies)} == {("sent", "queued")}


def test_only_the_waiting_customer_is_held_back(settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio, clock)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    _settle(fake_twilio, dispatcher)

    fake_twilio.fail_next(500)
    first = _say(service, "where is my order")
    _once(dispatcher)
    second = _say(service, "when will it arrive")
    with service.db.session() as session:
        ravi = Customer(phone=RAVI, name="Ravi")
        session.add(ravi)
        session.flush()
        other = enqueue_message(session=session, customer=ravi, channel="sms", text="Hello Ravi")
        assert other is not None
    _once(dispatcher)
    assert [m["body"] for m in fake_twilio.messages] == ["Hello Ravi"]  # Ravi is not behind Asha
    assert _rows(service, second)[0][0].attempts == 0
    clock.advance(seconds=3)
    _once(dispatcher)
    _once(dispatcher)
    assert [m["body"] for m in fake_twilio.sent_to(ASHA)] == [m.text for m in first + second]


def test_a_reply_hours_late_is_cancelled_as_obsolete_not_sent(settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio, clock)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    _settle(fake_twilio, dispatcher)
    started = clock.now

    fake_twilio.refuse_connections()
    replies = _say(service, "where is my order")
    clock.advance(seconds=30)
    replies += _say(service, "when will it arrive")
    while clock.now - started < timedelta(hours=3):
        _once(dispatcher)
        clock.advance(minutes=1)
    fake_twilio.recover()
    for _ in range(5):
        _once(dispatcher)
        clock.advance(minutes=1)

    assert fake_twilio.sent_to(ASHA) == []  # nothing arrives hours late
    for row, message in _rows(service, replies):
        assert (row.status, message.status) == ("expired", "expired")
        assert "obsolete" in (message.error or "")
    with TestClient(create_app(service=service)) as client:
        log = client.get("/api/orders/A1001/messages", headers={"Authorization": f"Bearer {TEST_API_KEY}"}).json()
    out = {m["text"]: m for m in log["messages"] if m["direction"] == "out"}
    for message in replies:
        assert out[message.text]["status"] == "expired" and "obsolete" in out[message.text]["error"]


def test_two_workers_keep_each_customers_messages_in_order(settings: Settings, fake_twilio: FakeTwilio) -> None:
    clock = Clock()
    service = _service(settings, fake_twilio, clock)
    phones = [f"+9198700{i:05d}" for i in range(8)]
    with service.db.session() as session:
        customers = []
        for phone in phones:
            customer = Customer(phone=phone)
            session.add(customer)
            customers.append(customer)
        session.flush()
        for n in range(4):
            for customer in customers:
                enqueue_message(session=session, customer=customer, channel="sms", text=f"part {n}")
    fake_twilio.fail_next(500, times=6)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        own = Dispatcher(new_service(service.settings, migrate=False, clock=clock).db, service.settings,
                         clock=clock, worker_id=name)
        try:
            barrier.wait()
            for _ in range(40):
                asyncio.run(own.run_once_and_close(limit=3))  # small batches: the limit cuts customers' lanes
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        clock.advance(minutes=2)  # past every backoff
    assert not errors
    for phone in phones:
        assert [m["body"] for m in fake_twilio.sent_to(phone)] == [f"part {n}" for n in range(4)]
