"""The optional LLM fallback inside the running service, on SQLite and PostgreSQL.

The real `openai` client talks to a fake OpenAI-compatible server on loopback.
An unclear message is sent to the LLM and its valid answer drives the flow;
when the LLM cannot answer, the bot does not guess: a person gets it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Escalation
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import upsert_order
from intents import classify
from tests.fakes.openai_server import FakeOpenAI
from tests.support.factories import order_payload

GIBBERISH = ("blorf zint", "qwerty uiop", "zorbo flimp kax", "vrumm plax", "kwee snarf")


def _unsure_text() -> str:
    for text in GIBBERISH:
        if classify(text).uncertain:
            return text
    pytest.fail("no gibberish candidate is uncertain for the current model; extend GIBBERISH")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _service(settings: Settings, fake: FakeOpenAI) -> Service:
    llm_settings = settings.model_copy(update={
        "openai_api_key": settings.openai_api_key.__class__("sk-test"),
        "openai_base_url": fake.base_url,
        "llm_model": "fake-model", "allow_private_urls": True,  # the fake LLM listens on loopback
    })
    service = Service.create(llm_settings)
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
    return service


def _say(service: Service, text: str):  # type: ignore[no-untyped-def]
    return service.handle_inbound(InboundMessage(channel="console", text=text, phone="+919812345678",
                                                 provider_message_id=f"t-{uuid.uuid4()}"))


def test_llm_answer_is_used_for_an_unclear_message(settings: Settings, fake: FakeOpenAI) -> None:
    service = _service(settings, fake)
    fake.reply_json({"intent": "wismo", "confidence": 0.8, "entities": []})
    handled = _say(service, _unsure_text())
    assert len(fake.requests) == 1
    assert handled.turns[0].classification.source == "llm"
    assert "A1001" in handled.replies[0].text


def test_llm_failure_escalates_instead_of_guessing(settings: Settings, fake: FakeOpenAI) -> None:
    service = _service(settings, fake)
    fake.reply_status(500)
    handled = _say(service, _unsure_text())
    assert handled.turns[0].escalated
    assert "colleague" in handled.replies[0].text
    with service.db.session() as session:
        escalation = session.exec(select(Escalation)).one()
    assert escalation.reason == "llm_unavailable"
    assert escalation.status == "open"


def test_a_clear_message_never_calls_the_llm(settings: Settings, fake: FakeOpenAI) -> None:
    service = _service(settings, fake)
    handled = _say(service, "where is my order")
    assert fake.requests == []
    assert "A1001" in handled.replies[0].text
