"""Demo data: a handful of customers and orders a newcomer can talk to at once.

Loaded through the same domain functions as the API (upsert + events + hooks).
Loading is idempotent: demo orders already in the database are refreshed (dates,
items) and keep what happened to them since (a conversation, a cancellation);
`reset_demo` is the one explicit way to wipe the demo customers and start over.
It never touches customers or orders that are not the demo's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlmodel import Session, SQLModel, col, select

from bot.core.errors import Conflict
from bot.core.models import Customer, Order
from bot.core.replies import DATA_DIR
from bot.core.schemas import OrderEventIn, OrderIn
from bot.service import Service
from bot.store.orders import get_order

DEMO_FILE = DATA_DIR / "demo" / "orders.yml"


@dataclass(frozen=True)
class DemoOrder:
    """What loading did with one demo order."""

    order_id: str
    outcome: str  # created | refreshed | taken (the id belongs to another, e.g. erased, customer)


def database_is_empty(service: Service) -> bool:
    with service.db.read() as session:
        return session.exec(select(Order.id).limit(1)).first() is None


def _demo_spec(path: Path) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["orders"]
    return orders


def load_demo(service: Service, path: Path = DEMO_FILE) -> list[str]:
    """Create (or refresh) the demo orders. Returns the ids now loaded. Safe to run twice."""
    return [d.order_id for d in load_demo_orders(service, path) if d.outcome != "taken"]


def load_demo_orders(service: Service, path: Path = DEMO_FILE) -> list[DemoOrder]:
    """Create the missing demo orders and refresh the others; never fails on an existing one."""
    today = service.now().date()
    loaded: list[DemoOrder] = []
    for raw in _demo_spec(path):
        data: dict[str, Any] = dict(raw)
        events = data.pop("events", [])
        promised = data.pop("promised_in_days", None)
        if promised is not None:
            data["promised_date"] = (today + timedelta(days=int(promised))).isoformat()
        order_in = OrderIn.model_validate(data)
        try:
            with service.db.session() as session:
                created = service.save_order(session, order_in).created
        except Conflict:
            # The id is held by another customer (the demo customer was erased): report it, change nothing.
            loaded.append(DemoOrder(order_in.order_id, "taken"))
            continue
        if created:
            _apply_demo_events(service, order_in.order_id, events, today)
        loaded.append(DemoOrder(order_in.order_id, "created" if created else "refreshed"))
    return loaded


def _apply_demo_events(service: Service, order_id: str, events: list[Any], today: Any) -> None:
    base = service.now() - timedelta(hours=len(events) + 1)
    for index, item in enumerate(events):
        event = {"type": item} if isinstance(item, str) else dict(item)
        if "eta_in_days" in event:
            event["eta"] = (today + timedelta(days=int(event.pop("eta_in_days")))).isoformat()
        event["at"] = (base + timedelta(hours=index)).isoformat()
        with service.db.session() as session:
            order = get_order(session=session, order_id=order_id)
            service.record_order_event(session, order, OrderEventIn.model_validate(event))


def reset_demo(service: Service, path: Path = DEMO_FILE) -> int:
    """Delete the demo customers (by phone, and whoever holds a demo order id) with everything
    that refers to them: orders, conversations, messages, outbox rows, escalations.
    Returns how many customers were deleted. Other customers are untouched."""
    spec = _demo_spec(path)
    phones = {str(o["customer"]["phone"]) for o in spec}
    order_ids = {str(o["order_id"]) for o in spec}
    with service.db.session() as session:
        customer_ids = set(session.exec(select(Customer.id).where(col(Customer.phone).in_(phones))).all())
        customer_ids |= set(session.exec(select(Order.customer_id).where(col(Order.order_id).in_(order_ids))).all())
        customer_ids.discard(None)
        if not customer_ids:
            return 0
        _delete_with_dependents(session, "customer", {int(i) for i in customer_ids if i is not None})
    return len(customer_ids)


def _delete_with_dependents(session: Session, root: str, root_ids: set[int]) -> None:
    """Delete rows of `root` and, first, every row that refers to them through a foreign key,
    following the schema's foreign keys (so a table added later is covered too)."""
    tables = SQLModel.metadata.sorted_tables
    doomed: dict[str, set[Any]] = {root: set(root_ids)}
    changed = True
    while changed:  # the closure over foreign keys: customer -> orders -> message -> outbox …
        changed = False
        for table in tables:
            (pk,) = table.primary_key.columns
            for fk in table.foreign_keys:
                parents = doomed.get(fk.column.table.name)
                if not parents:
                    continue
                found = set(session.execute(sa.select(pk).where(fk.parent.in_(parents))).scalars())
                new = found - doomed.setdefault(table.name, set())
                if new:
                    doomed[table.name] |= new
                    changed = True
    for table in reversed(tables):  # children before parents
        ids = doomed.get(table.name)
        if ids:
            (pk,) = table.primary_key.columns
            session.execute(sa.delete(table).where(pk.in_(ids)))
