"""Regression: a COD reminder already queued (waiting for its send time, a rate
limit or quiet hours) still went out after the customer confirmed the order."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Customer, Message, Order
from bot.core.settings import Settings
from tests.journeys.conftest import ist, make_kit


def test_yes_cancels_a_reminder_that_is_still_waiting(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))
    with kit.client:
        kit.post_order(payment_method="cod")
        kit.run_until(ist(23, 10, 30))
        with kit.service.db.session() as session:  # a reminder queued for later, as the journey would
            order = session.exec(select(Order)).one()
            customer = session.get(Customer, order.customer_id)
            assert customer is not None
            planned = kit.service.journeys.plan(session, journey="cod_reminder", order=order, customer=customer,
                                             dedupe_key="test:reminder", now=kit.clock(), delay=timedelta(hours=1))
            assert planned.message is not None
            reminder_id = planned.message.id
        handled = kit.service.handle_inbound(InboundMessage(
            channel="sms", text="yes", phone="+919812345678", provider_message_id=f"SM{uuid.uuid4().hex}",
            received_at=kit.clock()))
        assert handled.replies
        kit.run_until(ist(23, 13))
        with kit.service.db.session() as session:
            assert session.exec(select(Order)).one().cod_status == "confirmed"
            reminder = session.get(Message, reminder_id)
            assert reminder is not None and reminder.status == "cancelled"
        assert [s.kind for s in kit.recorder.sent if s.kind == "journey.cod_reminder"] == []
