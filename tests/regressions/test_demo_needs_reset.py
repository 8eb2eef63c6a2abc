"""`doorstep demo` could not load the demo data again: after a demo customer was erased it
crashed ("order 'A1001' belongs to another customer") and there was no way to start over.
Now loading is idempotent (existing demo orders are kept, a taken id is reported), and
`doorstep demo --reset` wipes the demo customers and loads them fresh."""

from __future__ import annotations

import os
import subprocess

from sqlmodel import select

from bot.cli.demo import load_demo_orders, reset_demo
from bot.core.models import Customer, Order
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.erasure import erase_customer
from bot.store.orders import upsert_order
from tests.support.factories import order_payload
from tests.support.server import DOORSTEP


def _outcomes(service: Service) -> dict[str, str]:
    return {d.order_id: d.outcome for d in load_demo_orders(service)}


def test_demo_loads_again_after_changes_and_erasure(settings: Settings) -> None:
    service = Service.create(settings)
    with service.db.session() as session:  # a real shop order that the demo must never touch
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(order_id="SHOP-1",
                                                                                    phone="+919800000001")))
    assert set(_outcomes(service).values()) == {"created"}
    assert set(_outcomes(service).values()) == {"refreshed"}  # twice: nothing duplicated, nothing fails

    with service.db.session() as session:
        erase_customer(session=session, phone="+919812345678", now=service.now())
    outcomes = _outcomes(service)  # used to raise Conflict
    assert outcomes["A1001"] == "taken" and outcomes["A1002"] == "refreshed"

    assert reset_demo(service) == 4  # the four demo customers, the erased one included
    assert set(_outcomes(service).values()) == {"created"}
    with service.db.read() as session:
        order = session.exec(select(Order).where(Order.order_id == "A1001")).one()
        customer = session.get(Customer, order.customer_id)
        assert customer is not None and customer.phone == "+919812345678" and order.status == "shipped"
        shop = session.exec(select(Order).where(Order.order_id == "SHOP-1")).one()
        assert session.get(Customer, shop.customer_id) is not None


def test_demo_command_twice_and_with_reset(settings: Settings) -> None:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DOORSTEP_API_KEY": "k" * 32, "COLUMNS": "200"}
    first = subprocess.run([DOORSTEP, "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([DOORSTEP, "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout and "A1001" in again.stdout
    reset = subprocess.run([DOORSTEP, "demo", "--reset"], env=env, capture_output=True, text=True, timeout=120)
    assert reset.returncode == 0, reset.stderr
    assert "Deleted 4 demo customers" in reset.stdout and "new" in reset.stdout
