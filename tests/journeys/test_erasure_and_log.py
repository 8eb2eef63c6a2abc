"""Erasure (DELETE /api/customers/{phone}) and the message log (GET /api/orders/{id}/messages)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import SQLModel, select

import bot.core.models  # noqa: F401  (all tables in the metadata)
from bot.core.channels import InboundMessage
from bot.core.models import Customer, Outbox
from tests.journeys.conftest import Kit, ist

PHONE = "+919812345678"


def _all_text(kit: Kit) -> str:
    """Every value of every row of every table, as one string."""
    chunks: list[str] = []
    with kit.service.db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


def test_message_log_shows_every_message_with_its_status(kit: Kit) -> None:
    kit.post_order()
    kit.run_until(kit.clock())  # confirmation: sent
    kit.service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone=PHONE,
                                              provider_message_id=f"SM{uuid.uuid4().hex}", received_at=kit.clock()))
    kit.clock.set(ist(23, 22))
    kit.event("A1001", "shipped")  # quiet hours: scheduled
    log = kit.log("A1001")
    assert [(m["direction"], m["status"]) for m in log] == [
        ("out", "sent"), ("in", "delivered"), ("out", "queued"), ("out", "scheduled")]
    scheduled = log[-1]
    assert scheduled["journey"] == "shipped" and scheduled["template"] == "journey.shipped"
    assert scheduled["due_at"].startswith("2026-11-24T02:30") and scheduled["sent_at"] is None
    assert log[0]["sent_at"] and log[0]["channel"] == "sms" and "A1001" in log[0]["text"]
    # Its validity passes before any dispatcher runs: expired, not sent late.
    kit.clock.set(ist(27, 12))
    kit.run_until(kit.clock())
    assert kit.log("A1001")[-1]["status"] == "expired"


def test_message_log_for_an_unknown_order_is_404(kit: Kit) -> None:
    response = kit.client.get("/api/orders/NOPE/messages", headers=kit.auth)
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    assert kit.client.get("/api/orders/NOPE/messages").status_code == 401


def test_erasure_removes_personal_data_everywhere_and_cancels_pending(kit: Kit) -> None:
    kit.post_order(customer={"name": "Asha Rao", "telegram_chat_id": 55501234},
                   shipping_address={"line1": "12 MG Road", "landmark": "near Trinity metro"})
    kit.run_until(kit.clock())
    kit.service.handle_inbound(InboundMessage(channel="sms", text="my flat is 4B at Prestige Towers, call 9812345678",
                                              phone=PHONE, provider_message_id=f"SM{uuid.uuid4().hex}",
                                              received_at=kit.clock()))
    kit.service.handle_inbound(InboundMessage(channel="sms", text="agent please", phone=PHONE,
                                              provider_message_id=f"SM{uuid.uuid4().hex}", received_at=kit.clock()))
    kit.clock.set(ist(23, 23))
    kit.event("A1001", "shipped")  # scheduled for the morning
    before = _all_text(kit)
    assert "Prestige Towers" in before and "MG Road" in before and PHONE in before

    response = kit.client.delete(f"/api/customers/{PHONE}", headers=kit.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["erased"] is True and body["already_erased"] is False and body["cancelled_messages"] >= 1
    assert PHONE not in response.text

    after = _all_text(kit)
    for secret in (PHONE, "9812345678", "Asha", "MG Road", "Trinity", "Prestige Towers", "55501234"):
        assert secret not in after, secret
    assert [m["status"] for m in kit.log("A1001")][-1] == "cancelled"
    with kit.service.db.session() as session:
        customer = session.exec(select(Customer)).one()
        assert customer.phone is None and customer.phone_hash and customer.erased_at is not None
        assert not session.exec(select(Outbox).where(Outbox.kind == "message", Outbox.status == "pending")).all()
    kit.run_until(ist(24, 10))
    assert len(kit.recorder.sent) <= 3  # confirmation and the two replies; nothing after erasure

    again = kit.client.delete(f"/api/customers/{PHONE}", headers=kit.auth)
    assert again.status_code == 200 and again.json()["already_erased"] is True


def test_erasure_bad_input(kit: Kit) -> None:
    assert kit.client.delete("/api/customers/+14155550199", headers=kit.auth).status_code == 404
    bad = kit.client.delete("/api/customers/not-a-phone", headers=kit.auth)
    assert bad.status_code == 422 and "phone" in bad.json()["detail"]
    assert kit.client.delete(f"/api/customers/{PHONE}").status_code == 401


def test_an_opted_out_number_stays_opted_out_after_erasure(kit: Kit) -> None:
    kit.post_order()
    kit.run_until(kit.clock())
    with kit.service.db.session() as session:
        customer = session.exec(select(Customer)).one()
        customer.opted_out_channels = ["sms"]
        session.add(customer)
    assert kit.client.delete(f"/api/customers/{PHONE}", headers=kit.auth).status_code == 200
    kit.clock.advance(timedelta(days=30))
    kit.post_order(order_id="A2002")  # the same number orders again
    kit.event("A2002", "shipped")
    kit.run_until(kit.clock() + timedelta(hours=1))
    assert len(kit.recorder.sent) == 1  # only the first order's confirmation, before the opt-out
    assert kit.log("A2002") == []
