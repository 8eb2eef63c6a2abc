"""An order event and a conversation turn take their row locks in one order: the conversation, then the order.

The engine holds the customer's conversation while it changes an order; an order event (API, carrier)
that changed the order first and then opened a flow in that conversation (the COD question after
"confirmed") would wait for it the other way round, and PostgreSQL would abort one of the two as a
deadlock. PostgreSQL only: SQLite serialises writers with one lock.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.conversations import conversation_for
from bot.store.orders import get_order
from tests.support.factories import order_payload


def test_an_order_event_waits_for_the_conversation_before_it_locks_the_order(settings: Settings,
                                                                              database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL only (SQLite has a single writer)")
    service = Service.create(settings)
    with service.db.session() as session:
        saved = service.save_order(session, OrderIn.model_validate(order_payload("A3003", payment_method="cod")),
                                   journeys=False)
        conversation = conversation_for(session, saved.customer, "sms")
        session.flush()
        conversation_id, order_pk = conversation.id, saved.order.id

    outside = sa.create_engine(database_url)
    errors: list[BaseException] = []
    try:
        with outside.connect() as holder:
            holder.execute(sa.text("SELECT id FROM conversation WHERE id = :id FOR UPDATE"), {"id": conversation_id})

            def confirm() -> None:
                try:
                    with service.db.session() as session:
                        order = get_order(session=session, order_id="A3003")
                        service.record_order_event(session, order, OrderEventIn(type="confirmed"))
                except BaseException as exc:  # reported below
                    errors.append(exc)

            worker = threading.Thread(target=confirm)
            worker.start()
            worker.join(timeout=1.0)
            assert worker.is_alive(), "the event did not wait for the conversation the engine holds"
            with outside.connect() as probe:  # the order must still be free: nothing locked it yet
                probe.execute(sa.text("SET lock_timeout = '200ms'"))
                probe.execute(sa.text("SELECT id FROM orders WHERE id = :id FOR UPDATE"), {"id": order_pk})
                probe.rollback()
            holder.rollback()  # the engine's turn ends
            worker.join(timeout=10)
        assert not worker.is_alive() and not errors, errors
        with service.db.read() as session:
            assert get_order(session=session, order_id="A3003").status == "confirmed"
    finally:
        outside.dispose()
        service.db.dispose()
