"""The gateway and the WISMO flow end to end in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid

from sqlmodel import col, select

from bot.cli.demo import load_demo
from bot.core.channels import InboundMessage
from bot.core.models import Message, Outbox
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import apply_event, get_order, upsert_order
from tests.support.factories import order_payload


def _say(service: Service, phone: str, text: str, sid: str | None = None):  # type: ignore[no-untyped-def]
    return service.handle_inbound(InboundMessage(channel="console", text=text, phone=phone,
                                                 provider_message_id=sid or f"t-{uuid.uuid4()}"))


def _add_order(service: Service, **kw: object) -> None:
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(**kw)))  # type: ignore[arg-type]


def test_wismo_answers_about_the_right_order(settings: Settings) -> None:
    service = Service.create(settings)
    _add_order(service)
    _add_order(service, order_id="Z9", phone="+919800000001", carrier="BlueDart", customer={"name": "Other"})
    with service.db.session() as session:
        apply_event(session=session, order=get_order(session=session, order_id="A1001"),
                    event_in=OrderEventIn(type="shipped"))
    handled = _say(service, "+919812345678", "where is my order")
    assert len(handled.replies) == 1
    text = handled.replies[0].text
    assert "A1001" in text and "Delhivery" in text and "https://track.example.com/DL123" in text
    assert "Z9" not in text and "BlueDart" not in text
    with service.db.session() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message")).all()
        assert [r.status for r in rows] == ["pending"]
        inbound = session.exec(select(Message).where(Message.direction == "in")).one()
        assert inbound.intent == "wismo" and inbound.status == "processed"


def test_number_with_no_order_gets_a_polite_reply(settings: Settings) -> None:
    service = Service.create(settings)
    handled = _say(service, "+14155550199", "where is my order??")
    assert len(handled.replies) == 1
    assert "couldn't find an order" in handled.replies[0].text
    assert "support" in handled.replies[0].text


def test_same_provider_message_twice_is_handled_once(settings: Settings) -> None:
    service = Service.create(settings)
    _add_order(service)
    first = _say(service, "+919812345678", "where is my order", sid="SM1")
    second = _say(service, "+919812345678", "where is my order", sid="SM1")
    assert not first.duplicate and second.duplicate
    assert second.replies == []
    with service.db.session() as session:
        assert len(session.exec(select(Message).where(Message.direction == "out")).all()) == 1


def test_several_orders_ask_which_then_answer_the_choice(settings: Settings) -> None:
    service = Service.create(settings)
    load_demo(service)
    ask = _say(service, "+919876543210", "where is my order")
    assert "A1002" in ask.replies[0].text and "A1003" in ask.replies[0].text
    assert "1) A1002" in ask.replies[0].text and "2) A1003" in ask.replies[0].text  # oldest first
    answer = _say(service, "+919876543210", "2")
    assert "A1003" in answer.replies[0].text
    assert "out for delivery" in answer.replies[0].text


def test_two_messages_racing_from_one_customer_are_answered_in_order(settings: Settings) -> None:
    service = Service.create(settings)
    _add_order(service)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            _say(service, "+919812345678", f"where is my order {i}")
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with service.db.session() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in").order_by(col(Message.id))).all()
        outbound = session.exec(select(Message).where(Message.direction == "out").order_by(col(Message.id))).all()
    assert all(m.status == "processed" for m in inbound)
    assert len(outbound) == 4
    # Each reply was written after the previous inbound was handled: processing order == arrival order.
    processed_order = sorted(inbound, key=lambda m: m.processed_at)  # type: ignore[arg-type, return-value]
    assert [m.id for m in processed_order] == [m.id for m in inbound]


def test_nul_bytes_and_huge_texts_are_stored_safely(settings: Settings) -> None:
    service = Service.create(settings)
    handled = _say(service, "+919812345678", "where\x00 is my order" + "x" * 20000)
    assert len(handled.replies) == 1
    with service.db.session() as session:
        stored = session.exec(select(Message).where(Message.direction == "in")).one()
    assert "\x00" not in stored.text and len(stored.text) <= 4096
