"""The claim's second order check (`_left_behind`): a row the claim locked is not taken while an
earlier unfinished message of its customer is not among the rows it locked — whatever the reason
the filter let it through. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.core.models import Customer, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, Clock, add_order, new_service


def _three(service: Service, clock: Clock) -> list[int]:
    """Three messages of one customer, queued a minute apart: their outbox ids, in order."""
    ids = []
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        for minutes in (-30, -20, -10):
            message = enqueue_message(session=session, customer=customer, channel="sms", text=f"at {minutes}",
                                      priority=PRIORITY_TRANSACTIONAL, now=clock.now + timedelta(minutes=minutes))
            assert message is not None
        session.flush()
        ids = [row.id or 0 for row in session.exec(select(Outbox).where(Outbox.kind == "message")
                                                     .order_by(Outbox.id)).all()]
    return ids


def _set(service: Service, row_id: int, **values: object) -> None:
    with service.db.session() as session:
        session.execute(sa.update(Outbox).where(Outbox.id == row_id).values(**values))  # type: ignore[arg-type]


def test_a_message_behind_one_the_filter_left_out_is_not_taken(settings: Settings) -> None:
    """The first message was retried (its due time moved after the second's), so the filter keeps
    the second back; the third passes the filter (both earlier ones are due and ahead of it in the
    claim order) and would be claimed with the first: the check leaves it for later."""
    clock = Clock()
    service = new_service(settings)
    add_order(service)
    first, second, third = _three(service, clock)
    _set(service, first, due_at=clock.now - timedelta(minutes=15), attempts=1)
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    assert [row.row_id for row in dispatcher.claim()] == [first]
    with service.db.read() as session:
        statuses = {row.id: row.status for row in session.exec(select(Outbox)).all()}
    assert (statuses[second], statuses[third]) == ("pending", "pending")


def test_a_message_behind_a_sibling_without_first_due_at_waits(settings: Settings) -> None:
    """An earlier message without `first_due_at` (a row from before migration 0007), being sent
    by another worker: the filter does not see it, the check does; once that worker's lease has
    expired, both are claimed (the first reclaimed)."""
    clock = Clock()
    service = new_service(settings)
    add_order(service)
    first, second, third = _three(service, clock)
    _set(service, first, first_due_at=None, status="sending", claimed_by="other", attempts=1,
         claimed_until=clock.now + timedelta(minutes=1))
    _set(service, third, status="sent")
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    assert dispatcher.claim() == []
    clock.advance(minutes=2)
    assert [(row.row_id, row.reclaimed) for row in dispatcher.claim()] == [(first, True), (second, False)]


def test_a_message_behind_one_another_worker_is_claiming_waits(settings: Settings) -> None:
    """PostgreSQL: another worker's claim holds the first message locked (SKIP LOCKED skips it);
    the second is not taken meanwhile, and both are once the lock is gone."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite's one writer serialises claims)")
    clock = Clock()
    service = new_service(settings)
    add_order(service)
    first, second, third = _three(service, clock)
    _set(service, third, status="sent")
    dispatcher = Dispatcher(service.db, service.settings, clock=clock)
    with service.db.engine.connect() as other:
        other.execute(sa.text("SELECT id FROM outbox WHERE id = :id FOR UPDATE"), {"id": first})
        assert dispatcher.claim() == []
        other.rollback()
    assert [row.row_id for row in dispatcher.claim()] == [first, second]
