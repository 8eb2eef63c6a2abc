"""Quiet hours in the recipient's time zone, and held updates dropped once the customer has talked to the bot.

Quiet hours used only DOORSTEP_TIMEZONE, so a US customer of an Indian shop was
messaged at night; an order confirmation held by quiet hours still went out next
morning after the customer had already asked the bot about that order.
"""

from __future__ import annotations

import uuid

from bot.core.channels import InboundMessage
from tests.journeys.conftest import Kit, ist

US_PHONE = "+14155550123"  # San Francisco
IN_PHONE = "+919812345678"


def test_the_same_event_follows_each_recipients_own_night(kit: Kit) -> None:
    kit.post_order(order_id="US1", customer={"phone": US_PHONE, "name": "John"})
    kit.post_order(order_id="IN1", customer={"phone": IN_PHONE, "name": "Asha"})
    kit.run_until(kit.clock())
    kit.clock.set(ist(24, 12))  # noon in Kolkata = 22:30 in San Francisco
    kit.event("US1", "shipped")
    kit.event("IN1", "shipped")
    us, india = kit.log("US1")[-1], kit.log("IN1")[-1]
    assert india["status"] == "queued"
    assert us["status"] == "scheduled"  # held until 08:00 in San Francisco
    assert us["due_at"].startswith("2026-11-24T16:00")  # 08:00 PST, in UTC


def test_a_held_update_is_cancelled_once_the_customer_asked_about_that_order(kit: Kit) -> None:
    kit.clock.set(ist(23, 22, 30))  # quiet hours in Kolkata
    kit.post_order()
    confirmation = kit.log("A1001")[-1]
    assert confirmation["journey"] == "order_confirmed" and confirmation["status"] == "scheduled"
    kit.clock.set(ist(23, 23, 0))
    kit.service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone=IN_PHONE,
                                              provider_message_id=f"SM{uuid.uuid4().hex}", received_at=kit.clock()))
    log = kit.log("A1001")
    held = next(m for m in log if m["journey"] == "order_confirmed")
    assert held["status"] == "cancelled" and "talked to the bot" in held["error"]
    kit.run_until(ist(24, 9))
    [only] = kit.recorder.sent  # the WISMO reply; no confirmation the next morning
    assert "A1001" in only.text and only.kind != "journey.order_confirmed"
