"""Demo data: a handful of customers and orders a newcomer can talk to at once.

Loaded through the same domain functions as the API (upsert + events + hooks).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import select

from bot.models import Customer, Order
from bot.orders import apply_event, get_order, upsert_order
from bot.replies import DATA_DIR
from bot.schemas import OrderEventIn, OrderIn
from bot.service import Service

DEMO_FILE = DATA_DIR / "demo" / "orders.yml"


def database_is_empty(service: Service) -> bool:
    with service.db.session() as session:
        return session.exec(select(Order.id).limit(1)).first() is None


def load_demo(service: Service, path: Path = DEMO_FILE) -> list[str]:
    """Create (or refresh) the demo orders. Returns their ids. Safe to run twice."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    today = service.now().date()
    loaded: list[str] = []
    for raw in spec["orders"]:
        data: dict[str, Any] = dict(raw)
        events = data.pop("events", [])
        promised = data.pop("promised_in_days", None)
        if promised is not None:
            data["promised_date"] = (today + timedelta(days=int(promised))).isoformat()
        order_in = OrderIn.model_validate(data)
        with service.db.session() as session:
            order, created = upsert_order(session=session, order_in=order_in)
            session.flush()
            customer = session.get(Customer, order.customer_id)
            assert customer is not None
            service.hooks.order_saved(session=session, order=order, customer=customer, created=created)
        if created:
            base = service.now() - timedelta(hours=len(events) + 1)
            for index, item in enumerate(events):
                event = {"type": item} if isinstance(item, str) else dict(item)
                if "eta_in_days" in event:
                    event["eta"] = (today + timedelta(days=int(event.pop("eta_in_days")))).isoformat()
                event["at"] = (base + timedelta(hours=index)).isoformat()
                with service.db.session() as session:
                    order = get_order(session=session, order_id=order_in.order_id)
                    recorded, duplicate = apply_event(session=session, order=order, event_in=OrderEventIn.model_validate(event))
                    customer = session.get(Customer, order.customer_id)
                    assert customer is not None
                    if not duplicate:
                        service.hooks.order_event(session=session, order=order, customer=customer, event=recorded)
        loaded.append(order_in.order_id)
    return loaded
