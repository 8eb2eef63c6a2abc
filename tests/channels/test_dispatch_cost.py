"""What a lone reply costs the dispatcher in statements: its claim, rate-limit reservation and
record run statements built once (not rebuilt, and their cache keys made again, on every
message), and few of them. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from bot.core.models import Customer, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.outbox import enqueue_message
from tests.channels.conftest import ASHA, add_order, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio


def _service(settings: Settings, twilio: FakeTwilio) -> Service:
    service = new_service(with_channels(settings, twilio=twilio))
    add_order(service)
    return service


def _queue(service: Service, text: str) -> None:
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        assert enqueue_message(session=session, customer=customer, channel="sms", text=text) is not None


def _dispatch_one(service: Service, dispatcher: Dispatcher, text: str, listener: str, seen: Any) -> None:
    _queue(service, text)
    sa.event.listen(service.db.engine, listener, seen)
    try:
        assert asyncio.run(dispatcher.run_once_and_close()) == 1
    finally:
        sa.event.remove(service.db.engine, listener, seen)


def test_a_lone_reply_runs_statements_built_once(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """The second lone reply executes the very statement objects the first one did: nothing of the
    claim, the reservation or the record is built per call (building a statement and its cache
    key cost more CPU than running it)."""
    service = _service(settings, fake_twilio)
    dispatcher = Dispatcher(service.db, service.settings)
    rounds: list[list[Any]] = [[], []]

    for index, executed in enumerate(rounds):
        def seen(_conn: object, clause: object, *_: object, executed: list[Any] = executed) -> None:
            if not isinstance(clause, str):
                executed.append(clause)

        _dispatch_one(service, dispatcher, f"reply {index}", "before_execute", seen)

    first, second = rounds  # the first also prunes the rate-limit table (once a minute)
    assert len(second) >= 5
    assert all(any(statement is earlier for earlier in first) for statement in second), \
        [str(statement) for statement in second if not any(statement is earlier for earlier in first)]
    assert [m["body"] for m in fake_twilio.messages] == ["reply 0", "reply 1"]


def test_a_lone_reply_is_claimed_reserved_and_recorded_in_few_statements(settings: Settings,
                                                                          fake_twilio: FakeTwilio) -> None:
    """The claim (one statement that also checks the customer's order on the rows it took, and
    the UPDATE to `sending`), the reservation (one upsert) and the record (the guarded UPDATE of
    the row, returning whether it was still ours — SQLite too, no SELECT first — and the message's
    UPDATE): no SELECT at all."""
    service = _service(settings, fake_twilio)
    dispatcher = Dispatcher(service.db, service.settings)
    _dispatch_one(service, dispatcher, "warm-up", "before_cursor_execute", lambda *_: None)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:2]).upper())

    _dispatch_one(service, dispatcher, "counted", "before_cursor_execute", count)
    kinds = [statement.split()[0] for statement in statements if statement != "BEGIN IMMEDIATE"]
    assert sorted(kinds) == ["INSERT", "UPDATE", "UPDATE", "UPDATE", "WITH"], statements
    if service.db.is_sqlite:
        assert statements.count("BEGIN IMMEDIATE") == 3  # claim, reservation, record: one transaction each
    with service.db.read() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message")).all()
    assert [(row.status, row.claimed_until) for row in rows] == [("sent", None)] * 2
    assert all(row.provider_id for row in rows)


def test_a_lone_reply_reuses_the_result_metadata_of_the_first(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """Every statement of the claim, the reservation and the record that returns rows keeps its result
    metadata with its compiled form (SQLAlchemy's `_cached_metadata`): text statements name their
    columns by position, so the driver's column names are not matched again for every message."""
    service = _service(settings, fake_twilio)
    dispatcher = Dispatcher(service.db, service.settings)
    _dispatch_one(service, dispatcher, "warm-up", "after_execute", lambda *_: None)
    returning: list[tuple[str, bool]] = []

    def seen(_conn: object, clause: Any, _multi: object, _params: object, _options: object, result: Any) -> None:
        if result.returns_rows and result.context.compiled is not None:
            returning.append((" ".join(str(clause).split()[:4]), result.context.compiled._cached_metadata is not None))

    _dispatch_one(service, dispatcher, "counted", "after_execute", seen)
    assert len(returning) >= 3  # the claim, the reservation's upsert, the record's guarded UPDATE
    assert all(cached for _, cached in returning), returning
