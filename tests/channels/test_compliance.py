"""STOP / START / HELP / CANCEL through the full pipeline (gateway -> compliance -> outbox)."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from bot.conversation.gateway import Handled
from bot.core.channels import InboundMessage
from bot.core.models import Customer
from bot.core.settings import Settings
from bot.service import Service
from bot.store.outbox import PRIORITY_TRANSACTIONAL, enqueue_message
from tests.channels.conftest import ASHA, add_order, new_service


@pytest.fixture
def service(settings: Settings) -> Service:
    service = new_service(settings)
    add_order(service)
    return service


def say(service: Service, text: str, channel: str = "sms") -> Handled:
    return service.handle_inbound(InboundMessage(channel=channel, text=text, phone=ASHA,
                                                 provider_message_id=f"t-{uuid.uuid4()}"))


def opted_out(service: Service) -> list[str]:
    with service.db.session() as session:
        return session.exec(select(Customer).where(Customer.phone == ASHA)).one().opted_out_channels


@pytest.mark.parametrize("word", ["STOP", "stop", "  Stop ", "STOPALL", "unsubscribe", "END", "quit", "REVOKE",
                                  "optout"])
def test_whole_message_opt_out_keywords_opt_out_with_one_confirmation(service: Service, word: str) -> None:
    handled = say(service, word)
    assert [m.template for m in handled.replies] == ["channels.opted_out"]
    assert "unsubscribed" in handled.replies[0].text
    assert opted_out(service) == ["sms"]
    again = say(service, word)
    assert again.replies == []  # one confirmation only
    assert opted_out(service) == ["sms"]


def test_opt_out_is_per_channel(service: Service) -> None:
    say(service, "STOP", channel="whatsapp")
    assert opted_out(service) == ["whatsapp"]


@pytest.mark.parametrize("sentence", ["please stop the courier", "stop the delivery of my order",
                                      "can you end this order"])
def test_sentences_go_to_the_classifier_not_opt_out(service: Service, sentence: str) -> None:
    handled = say(service, sentence)
    [turn] = handled.turns
    # Not a carrier keyword: the classifier and the flows decide, compliance stays out of it.
    assert turn.classification is not None and turn.classification.source != "keyword"
    assert turn.flow is not None
    assert all(m.template != "channels.opted_out" for m in handled.replies)


@pytest.mark.parametrize("word", ["START", "unstop"])
def test_start_opts_back_in(service: Service, word: str) -> None:
    say(service, "STOP")
    handled = say(service, word)
    assert [m.template for m in handled.replies] == ["channels.opted_in"]
    assert opted_out(service) == []


def test_yes_right_after_the_opt_out_confirmation_opts_back_in(service: Service) -> None:
    say(service, "STOP")
    handled = say(service, "yes")
    assert [m.template for m in handled.replies] == ["channels.opted_in"]
    assert opted_out(service) == []


def test_yes_without_an_opt_out_confirmation_is_not_an_opt_in(service: Service) -> None:
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        customer.opted_out_channels = ["sms"]
        session.add(customer)
    say(service, "yes")
    assert opted_out(service) == ["sms"]


@pytest.mark.parametrize("word", ["HELP", "info"])
def test_help_gets_the_help_text(service: Service, word: str) -> None:
    handled = say(service, word)
    assert [m.template for m in handled.replies] == ["channels.help"]
    assert "STOP" in handled.replies[0].text
    assert opted_out(service) == []


@pytest.mark.parametrize("word", ["CANCEL", "cancel", "Cancel."])
def test_bare_cancel_asks_which_one_is_meant(service: Service, word: str) -> None:
    handled = say(service, word)
    assert [m.template for m in handled.replies] == ["channels.cancel_which"]
    assert "order" in handled.replies[0].text and "STOP" in handled.replies[0].text
    assert opted_out(service) == []
    with service.db.session() as session:
        from bot.core.models import Outbox

        row = session.exec(select(Outbox).where(Outbox.message_id == handled.replies[0].id)).one()
        assert [tuple(b) for b in row.payload["buttons"]] == [("Cancel my order", "/btn:cancel_order"),
                                                               ("Stop messages", "STOP")]


def test_cancel_question_is_in_the_customers_language(settings: Settings) -> None:
    service = new_service(settings)
    add_order(service, customer={"locale": "es"})
    handled = say(service, "cancelar")
    assert handled.replies[0].text.startswith("¿Quieres cancelar tu pedido")


def test_help_and_stop_work_while_a_human_owns_the_conversation(service: Service) -> None:
    say(service, "where is my order")
    with service.db.session() as session:
        from bot.core.models import Conversation

        conversation = session.exec(select(Conversation)).one()
        conversation.owner = "human"
        session.add(conversation)
    handled = say(service, "STOP")
    assert [m.template for m in handled.replies] == ["channels.opted_out"]


def test_reply_still_goes_but_proactive_messages_do_not_after_stop(service: Service) -> None:
    from bot.delivery.dispatcher import Dispatcher
    from tests.channels.conftest import drain

    say(service, "STOP")
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == ASHA)).one()
        shipped = enqueue_message(session=session, customer=customer, channel="console", text="Shipped!",
                                  priority=PRIORITY_TRANSACTIONAL)
        customer.opted_out_channels = sorted({*customer.opted_out_channels, "console"})
        session.add(customer)
        assert shipped is not None
        shipped_id = shipped.id
    drain(Dispatcher(service.db, service.settings, kinds=("message",)))
    with service.db.session() as session:
        from bot.core.models import Message

        assert session.get(Message, shipped_id).status == "cancelled"  # type: ignore[union-attr]
