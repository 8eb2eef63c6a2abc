"""Acting on the order from the inbox over HTTP: each action is validated like the bot's, changes the
order with its event, emits the logistics event, and tells the customer in their language."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.core.models import Escalation, EscalationNote, LogisticsEvent, Message, Order, OrderEvent
from bot.core.schemas import OrderEventIn
from bot.core.settings import Settings
from bot.service import Service
from tests.handoff.helpers import PHONE, add_order, csrf_of, escalate, inbox_login, say

MARIA = "+34699111222"


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings)


def _escalation_id(service: Service) -> int:
    with service.db.session() as session:
        return session.exec(select(Escalation.id).order_by(col(Escalation.id).desc())).first()  # type: ignore[return-value]


def _next_delivery_day(service: Service, after: int = 1) -> date:
    """A day the default shop calendar accepts (not Sunday), `after` days from the shop's today or later."""
    day = service.now().astimezone(ZoneInfo("Asia/Kolkata")).date() + timedelta(days=after)
    while day.weekday() == 6:
        day += timedelta(days=1)
    return day


def _act(client: TestClient, esc_id: int, **fields: str) -> Any:
    csrf = csrf_of(client.get(f"/inbox/escalations/{esc_id}").text)
    return client.post(f"/inbox/escalations/{esc_id}/act", data={"csrf": csrf, **fields}, follow_redirects=False)


def _state(service: Service, order_id: str) -> dict[str, Any]:
    with service.db.session() as session:
        order = session.exec(select(Order).where(Order.order_id == order_id)).one()
        return {
            "order": order.model_dump(),
            "events": [(e.type, e.source) for e in session.exec(select(OrderEvent).where(OrderEvent.order_pk == order.id))],
            "feed": [(e.type, e.data) for e in session.exec(select(LogisticsEvent).where(LogisticsEvent.order_id == order_id))
                     if e.type != "escalation.created"],
            "told": [(m.template, m.text) for m in session.exec(select(Message).where(
                Message.order_pk == order.id, Message.direction == "out").order_by(col(Message.id)))],
        }


def test_reschedule_from_the_card_does_what_the_bots_yes_does_in_spanish(service: Service,
                                                                         client: TestClient) -> None:
    add_order(service, order_id="B2001", phone=MARIA, customer={"name": "María López", "locale": "es"})
    say(service, "¿dónde está mi pedido?", phone=MARIA)
    say(service, "quiero hablar con una persona", phone=MARIA)
    esc_id = _escalation_id(service)
    inbox_login(client)
    page = client.get(f"/inbox/escalations/{esc_id}").text
    assert "Reschedule delivery" in page and 'name="delivery_date"' in page

    day = _next_delivery_day(service, 2)
    done = _act(client, esc_id, action="reschedule", order_id="B2001", delivery_date=day.isoformat(),
                delivery_window="evening")
    assert done.status_code == 303 and done.headers["location"].endswith("?n=acted")
    state = _state(service, "B2001")
    assert state["order"]["delivery_date"] == day and state["order"]["delivery_window"] == "evening"
    assert ("rescheduled", "agent") in state["events"]
    [(kind, data)] = state["feed"]
    assert kind == "delivery.rescheduled" and data["delivery_date"] == day.isoformat() \
        and data["delivery_window"] == "evening"
    template, text = state["told"][-1]
    assert template == "reschedule.done" and text.startswith("¡Hecho! El pedido B2001")  # in Spanish
    with service.db.session() as session:
        escalation = session.get(Escalation, esc_id)
        assert escalation is not None and escalation.status == "assigned" and escalation.assignee == "Meera"
        note = session.exec(select(EscalationNote).where(EscalationNote.kind == "action")).one()
        assert note.outcome == "reschedule" and "B2001" in note.body and note.author == "Meera"
    after = client.get(f"/inbox/escalations/{esc_id}?n=acted").text
    assert "logistics is told" in after and "order action" in after and "¡Hecho!" in after


@pytest.mark.parametrize("shift, window, reason", [
    (-1, "", "that day has passed"),
    (30, "", "at most 7 days ahead"),
    (1, "midnight", "outside the shop"),
    (None, "", "does not deliver on that day"),  # a Sunday, closed in the default calendar
    ("holiday", "", "does not deliver on that day"),  # a holiday from doorstep.yaml
])
def test_a_day_the_bot_would_refuse_is_refused_and_nothing_changes(settings: Settings, shift: Any, window: str,
                                                                   reason: str) -> None:
    probe = Service.create(settings)
    holiday = _next_delivery_day(probe, 3)
    service = Service.create(settings, migrate=False, shop_overrides={"reschedule": {"holidays": [holiday.isoformat()]}})
    add_order(service)
    escalate(service)
    esc_id = _escalation_id(service)
    today = service.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    if shift is None:
        day = today + timedelta(days=(6 - today.weekday()) % 7 or 7)
    elif shift == "holiday":
        day = holiday
    else:
        day = today + timedelta(days=shift)
    before = _state(service, "A1001")
    with TestClient(__import__("bot.app", fromlist=["create_app"]).create_app(service=service)) as client:
        inbox_login(client)
        refused = _act(client, esc_id, action="reschedule", order_id="A1001", delivery_date=day.isoformat(),
                       delivery_window=window)
    assert refused.status_code == 422 and reason in refused.text and "Not done" in refused.text
    assert _state(service, "A1001") == before


def test_cod_confirm_and_cancel_and_prepaid_cancel(service: Service, client: TestClient) -> None:
    add_order(service, order_id="C1", payment_method="cod")
    add_order(service, order_id="C2", payment_method="cod")
    add_order(service, order_id="P1")
    escalate(service)
    esc_id = _escalation_id(service)
    inbox_login(client)
    page = client.get(f"/inbox/escalations/{esc_id}").text
    assert "Customer confirms COD" in page and re.search(r'<option value="C2"', page)

    assert _act(client, esc_id, action="cod_confirm", order_id="C1").status_code == 303
    c1 = _state(service, "C1")
    assert c1["order"]["cod_status"] == "confirmed" and ("cod_confirmed", "agent") in c1["events"]
    assert [k for k, _ in c1["feed"]] == ["cod.confirmed"] and c1["told"][-1][0] == "cod.confirmed"
    # Confirmed already: a second confirmation is refused (409) and changes nothing.
    again = _act(client, esc_id, action="cod_confirm", order_id="C1")
    assert again.status_code == 409 and "no cash-on-delivery confirmation pending" in again.text

    assert _act(client, esc_id, action="cod_cancel", order_id="C2", reason="nope").status_code == 422
    assert _act(client, esc_id, action="cod_cancel", order_id="C2", reason="found_cheaper").status_code == 303
    c2 = _state(service, "C2")
    assert c2["order"]["cod_status"] == "cancelled" and c2["order"]["status"] == "cancelled"
    assert c2["feed"] == [("cod.cancelled", {"order_id": "C2", "reason": "found_cheaper"})]

    assert _act(client, esc_id, action="cancel", order_id="P1").status_code == 303
    p1 = _state(service, "P1")
    assert p1["order"]["status"] == "cancel_requested" and [k for k, _ in p1["feed"]] == ["order.cancel_requested"]
    assert p1["told"][-1][0] == "cancel.done_prepaid"
    # Shipped orders cannot be cancelled from the card either.
    with service.db.session() as session:
        order = session.exec(select(Order).where(Order.order_id == "C1")).one()
        service.record_order_event(session, order, OrderEventIn(type="shipped"))
    assert _act(client, esc_id, action="cancel", order_id="C1").status_code == 409


def test_address_change_and_not_received_outcome(service: Service, client: TestClient) -> None:
    add_order(service)
    with service.db.session() as session:
        order = session.exec(select(Order).where(Order.order_id == "A1001")).one()
        service.record_order_event(session, order, OrderEventIn(type="delivered"))
    add_order(service, order_id="A2002")
    escalate(service)
    esc_id = _escalation_id(service)
    inbox_login(client)

    bad = _act(client, esc_id, action="address", order_id="A2002", line1="7 Park Street", city="Kolkata",
               postal_code="12")
    assert bad.status_code == 422 and "postal code is not valid" in bad.text
    assert _act(client, esc_id, action="address", order_id="A1001", line1="7 Park Street", city="Kolkata",
                postal_code="700016").status_code == 422  # delivered: too late for a new address
    done = _act(client, esc_id, action="address", order_id="A2002", line1="7 Park Street", line2="Flat 3B",
                city="Kolkata", postal_code="700016")
    assert done.status_code == 303
    a2 = _state(service, "A2002")
    assert a2["order"]["shipping_address"]["line1"] == "7 Park Street" and a2["order"]["address_status"] == "updated"
    assert [k for k, _ in a2["feed"]] == ["address.updated"] and "7 Park Street" in a2["told"][-1][1]

    assert _act(client, esc_id, action="investigation", order_id="A2002", outcome="refunded").status_code == 409
    assert _act(client, esc_id, action="investigation", order_id="A1001", outcome="lost").status_code == 422
    assert _act(client, esc_id, action="investigation", order_id="A1001", outcome="refunded",
                note="courier lost it").status_code == 303
    a1 = _state(service, "A1001")
    assert a1["order"]["extra"]["investigation"] == "refunded"
    assert a1["feed"] == [("order.investigation_closed",
                           {"order_id": "A1001", "outcome": "refunded", "note": "courier lost it"})]
    assert a1["told"][-1][0] == "wismo.investigation_refunded" and "refunded" in a1["told"][-1][1]


def test_an_order_of_another_customer_is_never_touched(service: Service, client: TestClient) -> None:
    add_order(service)
    add_order(service, order_id="B2001", phone=MARIA)
    escalate(service)
    esc_id = _escalation_id(service)
    inbox_login(client)
    before = _state(service, "B2001")
    refused = _act(client, esc_id, action="cancel", order_id="B2001")
    assert refused.status_code == 404 and "is not one of this customer" in refused.text
    assert _act(client, esc_id, action="explode", order_id="A1001").status_code == 422
    assert _state(service, "B2001") == before
    assert PHONE not in refused.text.split("tel:")[0]  # the error page names no phone outside the call link
