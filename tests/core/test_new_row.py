"""`new_row` builds the same row as the model's constructor, and it is stored the same way.

The message path builds a reply's Message and Outbox with `new_row` (the constructor's per-field
cost was a tenth of a batch's processing); these tests hold it to what the constructor gives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.core.db import Database
from bot.core.models import Customer, Message, Outbox, new_row

NOW = datetime(2026, 11, 29, 10, 30, tzinfo=UTC)


def _message_values() -> dict[str, Any]:
    return {"customer_id": None, "direction": "out", "channel": "sms", "text": "Your order is on its way",
            "status": "queued", "template": "shipped", "due_at": NOW, "created_at": NOW,
            "plan": {"channel": "sms", "form": "text"}}


def _outbox_values() -> dict[str, Any]:
    return {"kind": "message", "channel": "sms", "priority": 0, "due_at": NOW, "first_due_at": NOW,
            "expires_at": NOW + timedelta(hours=1), "payload": {"template": "shipped"}, "created_at": NOW,
            "updated_at": NOW}


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in type(row).model_fields}


@pytest.mark.parametrize(("model", "values"), [(Message, _message_values), (Outbox, _outbox_values)])
def test_the_same_row_as_the_constructor(model: Any, values: Any) -> None:
    built, constructed = new_row(model, **values()), model(**values())
    assert _fields(built) == _fields(constructed)
    assert built.model_dump() == constructed.model_dump()
    assert built.model_fields_set == constructed.model_fields_set
    # Defaults filled in as the constructor does (a list or dict of its own per row, not a shared one).
    other = new_row(model, **values())
    for name, value in _fields(built).items():
        if isinstance(value, (list, dict)) and name not in values():
            assert value is not getattr(other, name)


def test_unknown_or_missing_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        new_row(Message, **_message_values(), colour="red")
    values = _message_values()
    del values["direction"]
    with pytest.raises(TypeError, match="direction is required"):
        new_row(Message, **values)


def test_a_built_message_and_its_outbox_row_are_stored_and_linked(db: Database) -> None:
    """Queued as a reply is: the outbox row holds the message (no flush in between); the commit
    inserts both, the message first, and fills the outbox row's `message_id`."""
    with db.session() as session:
        customer = Customer(phone="+919800000001", name="Asha")
        session.add(customer)
        session.flush()
        message = new_row(Message, **{**_message_values(), "customer_id": customer.id})
        row = new_row(Outbox, **_outbox_values(), message=message, customer_id=customer.id)
        session.add(row)
        session.flush()
        assert message.id is not None and row.message_id == message.id
        message.status = "sent"  # a change after the insert is an UPDATE, as for any loaded row
    with db.read() as session:
        stored = session.exec(select(Message).where(Message.id == message.id)).one()
        queued = session.exec(select(Outbox).where(Outbox.message_id == message.id)).one()
    assert (stored.text, stored.status, stored.plan, stored.media_urls, stored.due_at) == (
        "Your order is on its way", "sent", {"channel": "sms", "form": "text"}, [], NOW)
    assert (queued.status, queued.attempts, queued.max_attempts, queued.payload, queued.customer_id) == (
        "pending", 0, 8, {"template": "shipped"}, customer.id)
