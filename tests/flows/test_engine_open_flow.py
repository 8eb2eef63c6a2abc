"""The engine's proactive entry points on a real database (SQLite and PostgreSQL), and the CLI runner."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli.app import app
from bot.core.channels import InboundMessage
from bot.core.db import Database
from bot.core.models import Conversation, LogisticsEvent
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store import conversations
from bot.store.orders import find_customer, get_order, upsert_order
from flows.proactive import NotApplicable
from tests.support.factories import order_payload

PHONE = "+919812345678"


def _service_with_cod_order(settings: Settings, db: Database) -> Service:
    service = Service.create(settings, db=db)  # the `db` fixture disposes the pool afterwards
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(payment_method="cod")))
    return service


def _say(service: Service, text: str) -> list[str]:
    handled = service.handle_inbound(InboundMessage(channel="console", text=text, phone=PHONE,
                                                    provider_message_id=f"t-{uuid.uuid4()}"))
    return [m.text for m in handled.replies]


def test_a_journey_opens_the_cod_flow_and_the_customers_yes_confirms(settings: Settings, db: Database) -> None:
    service = _service_with_cod_order(settings, db)
    with service.db.session() as session:
        customer = find_customer(session=session, phone=PHONE)
        assert customer is not None
        conversation = conversations.conversation_for(session, customer, "sms")
        session.flush()
        # The call shape bot.journeys.hooks uses: it sends its own text, the engine only opens the flow.
        conversations.open_flow(session=session, conversation=conversation, flow="cod", order_id="A1001",
                         now=service.now(), runtime=service.runtime, customer=customer)
    assert "is confirmed" in _say(service, "YES")[0]
    with service.db.session() as session:
        assert get_order(session=session, order_id="A1001").cod_status == "confirmed"
        assert [e.type for e in session.exec(select(LogisticsEvent)).all()] == ["cod.confirmed"]


def test_open_proactive_queues_the_question_once_and_refuses_a_confirmed_order(settings: Settings, db: Database) -> None:
    service = _service_with_cod_order(settings, db)
    with service.db.session() as session:
        customer = find_customer(session=session, phone=PHONE)
        assert customer is not None
        order = get_order(session=session, order_id="A1001")
        message = conversations.open_proactive(session=session, runtime=service.runtime, customer=customer,
                                        kind="cod_confirmation", order=order, dedupe_key="cod-ask:A1001")
        assert message is not None and "Reply YES to confirm or NO to cancel" in message.text
        again = conversations.open_proactive(session=session, runtime=service.runtime, customer=customer,
                                      kind="cod_confirmation", order=order, dedupe_key="cod-ask:A1001")
        assert again is None
        conversation = session.exec(select(Conversation)).one()
        assert (conversation.flow, conversation.state) == ("cod", "confirm")
    assert "may I ask why" in _say(service, "no")[0]
    assert "cancelled" in _say(service, "2")[0]
    with service.db.session() as session:
        order = get_order(session=session, order_id="A1001")
        assert (order.cod_status, order.status, order.extra["cancel_reason"]) == ("cancelled", "cancelled", "found_cheaper")
        customer = find_customer(session=session, phone=PHONE)
        assert customer is not None
        with pytest.raises(NotApplicable):
            conversations.open_proactive(session=session, runtime=service.runtime, customer=customer,
                                  kind="cod_confirmation", order=order)


def test_open_flow_rejects_unknown_flows_and_states(settings: Settings, db: Database) -> None:
    service = _service_with_cod_order(settings, db)
    with service.db.session() as session:
        customer = find_customer(session=session, phone=PHONE)
        assert customer is not None
        conversation = conversations.conversation_for(session, customer, "sms")
        with pytest.raises(ValueError, match="unknown flow"):
            conversations.open_flow(session=session, conversation=conversation, flow="nope", order_id="A1001")
        with pytest.raises(ValueError, match="no state"):
            conversations.open_flow(session=session, conversation=conversation, flow="reschedule", state="nope")


def test_cli_test_conversations_reports_pass_and_fail(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text('orders: [{order_id: A1, events: [shipped]}]\nturns:\n  - say: where is my order\n'
                    '    reply: "A1 is on its way with Delhivery"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["test-conversations", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text('orders: [{order_id: A1}]\nturns:\n  - say: cancel my order\n    reply: "no such reply"\n'
                   '    order: {status: cancelled}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["test-conversations", str(tmp_path)])
    assert result.exit_code == 1
    assert "1 passed, 1 failed" in result.output and "no such reply" in result.output
