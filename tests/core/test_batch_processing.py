"""Conversation work in batches (`Service.process_messages`, `Service.process_soon`): several
conversations in one transaction answer exactly as one at a time would, in each conversation's
arrival order, and one message that cannot be handled holds back no one else. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bot.conversation import gateway
from bot.core.channels import InboundMessage
from bot.core.models import Conversation, Customer, Message
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.core.vocab import HUMAN_OWNERS
from bot.service import Service
from bot.store.orders import find_customer
from tests.support.factories import order_payload

PHONES = [f"+9198700{i:05d}" for i in range(6)]


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    service = Service.create(settings)
    with service.db.session() as session:
        for i, phone in enumerate(PHONES):
            service.save_order(session, OrderIn.model_validate(order_payload(order_id=f"P{i:03d}", phone=phone)),
                               journeys=False)
    yield service
    service.db.dispose()


def _receive(service: Service, phone: str, text: str, sid: str) -> int:
    """Store one message as the webhooks' acknowledgement does (not identified yet); its id."""
    received = service.receive(InboundMessage(channel="sms", text=text, phone=phone, provider_message_id=sid))
    assert received.message_id is not None
    return received.message_id


def _replies(service: Service, phone: str) -> list[str]:
    with service.db.read() as session:
        customer = find_customer(session=session, phone=phone)
        assert customer is not None
        return list(session.exec(select(Message.text).where(Message.direction == "out",
                                                            Message.customer_id == customer.id)
                                 .order_by(col(Message.id))).all())


def test_a_batch_answers_every_conversation_in_its_arrival_order(service: Service) -> None:
    ids = []
    for i, phone in enumerate(PHONES):
        ids.append(_receive(service, phone, "where is my order", f"a{i}-{phone}"))
        ids.append(_receive(service, phone, "cancel my order", f"b{i}-{phone}"))
    turns = service.process_messages(ids)

    assert len(turns) == 2 * len(PHONES)
    for i, phone in enumerate(PHONES):
        first, second = _replies(service, phone)
        assert f"P{i:03d}" in first  # the WISMO answer names the customer's own order, and comes first
        assert "cancel" in second.lower()
    with service.db.read() as session:
        assert set(session.exec(select(Message.status).where(Message.direction == "in")).all()) == {"processed"}


def test_one_message_that_fails_holds_back_no_one_else(service: Service) -> None:
    if not service.db.is_postgres:
        pytest.skip("a database-side failure is staged with a PostgreSQL trigger")
    with service.db.engine.begin() as conn:
        conn.execute(sa.text("""
            CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
              IF NEW.text = 'poison' AND NEW.status = 'processed' THEN RAISE EXCEPTION 'refused'; END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql"""))
        conn.execute(sa.text("CREATE TRIGGER refuse_poison BEFORE UPDATE ON message "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"))
    try:
        ids = [_receive(service, phone, "poison" if i == 2 else "where is my order", f"p{i}-{phone}")
               for i, phone in enumerate(PHONES)]
        service.process_messages(ids)
    finally:  # the PostgreSQL test database is shared by the session's tests
        with service.db.engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_poison ON message"))
            conn.execute(sa.text("DROP FUNCTION refuse_poison()"))

    with service.db.read() as session:
        statuses = dict(session.exec(select(Message.text, Message.status).where(Message.direction == "in")).all())
        waiting = session.exec(select(Message.status).where(Message.text == "poison")).one()
    assert waiting == "received"  # left for the recovery tick, nothing of its turn written
    assert statuses["where is my order"] == "processed"
    for i, phone in enumerate(PHONES):
        assert len(_replies(service, phone)) == (0 if i == 2 else 1)


def test_process_soon_coalesces_concurrent_submissions_and_returns_after_commit(service: Service) -> None:
    ids = [_receive(service, phone, "where is my order", f"s{i}-{phone}") for i, phone in enumerate(PHONES)]

    async def submit_all() -> None:
        await asyncio.gather(*(service.process_soon(cid) for cid in ids))

    asyncio.run(submit_all())
    for phone in PHONES:  # every submitter returned only once its reply was committed
        assert len(_replies(service, phone)) == 1


def test_a_message_identified_before_is_answered_first_with_the_new_one(service: Service) -> None:
    # A failed batch (or a crash) can leave a message identified but not answered; the next batch of
    # that conversation answers it first, then the new one.
    first = _receive(service, PHONES[0], "where is my order", "w1")
    gateway.identify(service.db, up_to=first)
    second = _receive(service, PHONES[0], "cancel my order", "w2")

    turns = service.process_messages([second])

    assert len(turns) == 2
    wismo, cancel = _replies(service, PHONES[0])
    assert "P000" in wismo
    assert "cancel" in cancel.lower()
    with service.db.read() as session:
        assert set(session.exec(select(Message.status).where(Message.direction == "in")).all()) == {"processed"}


def test_a_batch_waits_for_a_busy_conversation_and_sees_what_its_holder_committed(service: Service) -> None:
    """PostgreSQL: the batch locks a sender's conversation as it reads it. A transaction holding that
    conversation (an agent taking it over) makes the batch wait, and the batch then works from the
    conversation as committed: the agent owns it, so the bot does not answer."""
    if not service.db.is_postgres:
        pytest.skip("row locks: PostgreSQL only (SQLite has a single writer)")
    service.process_messages([_receive(service, PHONES[2], "hi", "busy-warm")])  # the conversation exists
    replies_before = len(_replies(service, PHONES[2]))
    message_id = _receive(service, PHONES[2], "where is my order", "busy-one")
    with service.db.engine.connect() as holder:
        holder.begin()
        holder.execute(sa.text("UPDATE conversation SET owner = 'human' WHERE customer_id = "
                               "(SELECT id FROM customer WHERE phone = :phone)"), {"phone": PHONES[2]})
        batch = threading.Thread(target=service.process_messages, args=([message_id],))
        batch.start()
        batch.join(1.0)
        assert batch.is_alive()  # waiting for the conversation
        holder.commit()
    batch.join(30)
    assert not batch.is_alive()
    # A person owns it now: no answer to the question (it would name the order), at most the
    # one-time "a colleague will reply" acknowledgement.
    new_replies = _replies(service, PHONES[2])[replies_before:]
    assert len(new_replies) <= 1 and not any("P002" in reply for reply in new_replies)
    with service.db.read() as session:
        assert session.get(Message, message_id).status == "processed"  # type: ignore[union-attr]
        assert session.exec(select(Conversation.owner).join(Customer, col(Customer.id) == Conversation.customer_id)
                            .where(Customer.phone == PHONES[2])).one() in HUMAN_OWNERS


def test_a_batch_of_one_reads_each_table_once_and_updates_the_message_once(service: Service) -> None:
    service.process_messages([_receive(service, PHONES[1], "hi", "warm")])  # the customer's conversation exists
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    message_id = _receive(service, PHONES[1], "where is my order", "one")
    sa.event.listen(service.db.engine, "before_cursor_execute", count)
    try:
        turns = service.process_messages([message_id])
    finally:
        sa.event.remove(service.db.engine, "before_cursor_execute", count)

    assert len(turns) == 1 and len(turns[0].replies) == 1
    # The message, its sender's customer and conversation (PostgreSQL: locked as it is read), the
    # customer's orders (with their held journey messages); then the conversation and the message
    # updated once each, the reply and its outbox row inserted. (PostgreSQL's wake-up NOTIFY aside.)
    assert statements.count("SELECT") <= (4 if service.db.is_postgres else 3)  # PostgreSQL: + pg_notify
    assert statements.count("UPDATE") == 2
    assert statements.count("INSERT") == 2
