"""The webhooks' lean acknowledgement: one group-committed INSERT, answered only once committed,
never waiting for conversation work; identifying the sender happens in processing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bot.app import create_app
from bot.core.models import Conversation, Customer, Message, Outbox
from bot.core.settings import Settings
from bot.service import Service
from tests.channels.conftest import ASHA, PUBLIC_URL, add_order, new_service, with_channels
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support.server import DOORSTEP, free_port, serve_in_thread, wait_healthy


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service)
    return service


def _inbound(service: Service) -> list[Message]:
    with service.db.read() as session:
        return list(session.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id))).all())


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


async def _post_all(url: str, forms: list[tuple[dict[str, str], dict[str, str]]]) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(*(client.post(url, data=f, headers=h) for f, h in forms))
    return [r.status_code for r in responses]


def test_concurrent_identical_provider_ids_store_one_message(service: Service, fake_twilio: FakeTwilio) -> None:
    # A provider retrying while the first try is still in flight: 12 copies of one MessageSid at once,
    # among other customers' messages, all in the same group commits.
    form = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order", sid="SMsame")
    others = [fake_twilio.inbound(PUBLIC_URL, from_=f"+9198765432{i:02d}", body="hi", sid=f"SMother{i}")
              for i in range(6)]
    with serve_in_thread(create_app(service=service)) as base:
        statuses = asyncio.run(_post_all(base + "/webhooks/twilio", [form] * 12 + others))
        assert statuses == [200] * 18
        _wait(lambda: all(m.status == "processed" for m in _inbound(service)) and len(_inbound(service)) == 7)
    inbound = _inbound(service)
    assert sorted(m.provider_message_id or "" for m in inbound) == sorted(["SMsame"] + [f"SMother{i}" for i in range(6)])
    [asha] = [m for m in inbound if m.provider_message_id == "SMsame"]
    assert asha.intent == "wismo" and asha.sender is None  # identified: the sender is no longer kept
    with service.db.read() as session:
        replies = session.exec(select(Outbox).where(Outbox.customer_id == asha.customer_id)).all()
        assert len(replies) == 1  # answered once
        assert len(session.exec(select(Customer).where(Customer.phone == ASHA)).all()) == 1


def _hold_conversation(service: Service, conversation_id: int, release: threading.Event,
                       held: threading.Event) -> None:
    """What processing does while it works on a conversation: hold its lock (PostgreSQL: the row;
    SQLite: the one write lock, BEGIN IMMEDIATE), here until `release` is set."""
    lock = ("SELECT id FROM conversation WHERE id = :id FOR UPDATE" if service.db.is_postgres
            else "UPDATE conversation SET state = state WHERE id = :id")
    with service.db.engine.connect() as connection, connection.begin():
        connection.execute(sa.text(lock), {"id": conversation_id})
        held.set()
        release.wait(30)


def test_a_message_acked_while_its_conversation_is_busy_is_answered_without_waiting(
        service: Service, fake_twilio: FakeTwilio) -> None:
    """PostgreSQL: the acknowledgement takes no conversation lock, so it is answered at once. SQLite has
    one writer: it waits (busy_timeout) for the transaction holding it, then succeeds, never a 500."""
    url = "/webhooks/twilio"
    with serve_in_thread(create_app(service=service)) as base:
        first = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order", sid="SMfirst")
        assert httpx.post(base + url, data=first[0], headers=first[1]).status_code == 200
        _wait(lambda: [m.status for m in _inbound(service)] == ["processed"])
        with service.db.read() as session:
            conversation_id = session.exec(select(Conversation.id)).one()
        release, held = threading.Event(), threading.Event()
        busy = threading.Thread(target=_hold_conversation, args=(service, conversation_id, release, held))
        busy.start()
        if service.db.is_sqlite:
            threading.Timer(1.0, release.set).start()  # the busy transaction ends after 1 s
        try:
            assert held.wait(10)
            second = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order", sid="SMsecond")
            started = time.monotonic()
            response = httpx.post(base + url, data=second[0], headers=second[1], timeout=10)
            answered_in = time.monotonic() - started
            assert response.status_code == 200
            if service.db.is_postgres:
                assert answered_in < 2.0 and not release.is_set()
                # Stored and committed while the conversation is still busy: not handled yet.
                [_, waiting] = _inbound(service)
                assert waiting.provider_message_id == "SMsecond" and waiting.status == "received"
            else:
                assert 0.8 < answered_in < 5.0  # waited for the one writer, then stored
        finally:
            release.set()
            busy.join(10)
        _wait(lambda: [m.status for m in _inbound(service)] == ["processed", "processed"])


def test_an_acknowledged_message_survives_kill_9_right_after_the_answer(settings: Settings,
                                                                          fake_twilio: FakeTwilio) -> None:
    """The answer is sent only after the row is committed: kill -9 the server mid-burst, as soon as
    answers arrive, and every message answered 200 is stored; a restart handles each exactly once."""
    service = new_service(with_channels(settings, twilio=fake_twilio))
    phones = [f"+9198700000{i:02d}" for i in range(30)]
    for i, phone in enumerate(phones):
        add_order(service, order_id=f"K{i:03d}", phone=phone)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DOORSTEP_API_KEY": TEST_API_KEY,
           "DOORSTEP_PUBLIC_URL": PUBLIC_URL, "DOORSTEP_TIMEZONE": "Asia/Kolkata",
           "DOORSTEP_CONFIG": "does-not-exist.yaml", "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
           "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_SMS_FROM": SMS_FROM, "TWILIO_API_BASE_URL": fake_twilio.url,
           "TWILIO_SMS_RATE_PER_SECOND": "1000", "TWILIO_STATUS_CALLBACKS": "false"}
    forms = [fake_twilio.inbound(PUBLIC_URL, from_=phone, body="where is my order", sid=f"SMkill{i:03d}")
             for i, phone in enumerate(phones)]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(base, timeout=120, proc=proc)
        return proc

    proc = start()
    answered: list[str] = []

    async def burst() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(form: dict[str, str], headers: dict[str, str]) -> None:
                try:
                    response = await client.post(base + "/webhooks/twilio", data=form, headers=headers)
                except httpx.HTTPError:
                    return  # killed before answering: the provider would retry it
                if response.status_code == 200:
                    answered.append(form["MessageSid"])
                    if len(answered) == 10:
                        os.kill(proc.pid, signal.SIGKILL)  # the moment answers arrive, in the middle of the burst

            await asyncio.gather(*(one(f, h) for f, h in forms))

    try:
        asyncio.run(burst())
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert len(answered) >= 10
        stored = {m.provider_message_id for m in _inbound(service)}
        assert set(answered) <= stored  # nothing acknowledged is lost
        proc = start()  # recovery: process_pending identifies and handles what the crash left
        _wait(lambda: len(_inbound(service)) == len(stored)
              and all(m.status == "processed" for m in _inbound(service)), timeout=60)
        _wait(lambda: len(fake_twilio.messages) >= len(stored), timeout=60)
        time.sleep(1.0)
        replied_to = [m["to"] for m in fake_twilio.messages]
        assert sorted(replied_to) == sorted({m["to"] for m in fake_twilio.messages})  # none twice
        assert len(replied_to) == len(stored)
    finally:
        proc.kill()
        proc.wait(10)


def test_erasure_reaches_a_message_acknowledged_but_not_identified_yet(service: Service) -> None:
    """The sender of an acknowledged message waits in `message.sender` until processing: erasing the
    customer meanwhile blanks it, and processing it later creates no customer from it."""
    from bot.core.channels import InboundMessage
    from bot.store.erasure import erase_customer

    received = service.receive(InboundMessage(channel="sms", text="my address is 12 MG Road", phone=ASHA,
                                              provider_message_id="SMerase"))
    assert received.message_id is not None
    [waiting] = _inbound(service)
    assert waiting.conversation_id is None and waiting.sender == {"phone": ASHA}
    with service.db.session() as session:
        assert erase_customer(session=session, phone=ASHA, now=service.now()).found
    service.process_message(received.message_id)
    [erased] = _inbound(service)
    assert (erased.text, erased.sender, erased.conversation_id) == ("", None, None)
    with service.db.read() as session:
        assert session.exec(select(Customer).where(Customer.phone == ASHA)).all() == []
