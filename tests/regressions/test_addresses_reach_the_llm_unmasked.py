"""Addresses never reach the optional LLM, in any supported locale.

A Spanish address (`Calle Mayor 5, 3ºB, 28013 Madrid`) went to the LLM as
written: masking knew English and Indian street words after a house number,
not street types written first, floor and door markers, or 5-digit postal
codes without a "zip" cue. Each message below goes through the real `openai`
client to the fake OpenAI-compatible server on loopback; the request it
records holds none of the address, and the LLM's intent still comes back.
The customer's own name and address (known from the shop's order) are masked
too, even in words no pattern would recognise.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from bot.core.channels import InboundMessage
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import upsert_order
from intents import Context, Intent, classify
from intents.llm import CircuitBreaker, classify_with_llm, mask_private
from tests.fakes.openai_server import FakeOpenAI
from tests.intents.conftest import FROZEN
from tests.support.factories import order_payload

# (locale, message, fragments that must not reach the LLM)
ADDRESSES = [
    ("es", "cambiad la dirección a Calle Mayor 5, 3ºB, 28013 Madrid", ["Mayor", "3ºB", "28013", "Madrid"]),
    ("es", "mejor a Avda. de la Constitución 12, 2º izq, 41001 Sevilla", ["Constituci", "2º", "izq", "41001", "Sevilla"]),
    ("es", "envíenlo a C/ Gran Vía 28, piso 4, puerta 2", ["Gran", "28", "piso 4", "puerta 2"]),
    ("es", "la dirección buena es Paseo de Gracia 43, 08007 Barcelona", ["Gracia", "43", "08007", "Barcelona"]),
    ("es", "vivo en Plaza de España 1, portal 2, escalera B", ["España", "portal 2", "escalera B"]),
    ("es", "Carrer de Balmes 150, 3r 2a, Barcelona", ["Balmes", "150", "3r 2a", "Barcelona"]),
    ("es", "déjalo en Camino Viejo de Getafe 7, bajo A", ["Viejo", "Getafe", "bajo A"]),
    ("es", "entregar en Ronda de Toledo 1, planta 3, 28005 Madrid", ["Toledo", "planta 3", "28005", "Madrid"]),
    ("es", "nueva dirección: Travesía del Conde 3, 1ª, 15001 A Coruña", ["Conde", "1ª", "15001", "Coruña"]),
    ("es", "mi casa está en Av. Diagonal 640, ático 2", ["Diagonal", "640", "ático 2"]),
    ("es", "la dirección es Carrera 7 # 45-12, Bogotá", ["Carrera 7", "45-12", "Bogot"]),
    ("en", "send it to my mom's place instead - 45 Park Street, Kolkata 700016", ["45", "Park", "Kolkata", "700016"]),
    ("en", "ship to 88 Oakwood Drive, Springfield, IL 62704", ["88", "Oakwood", "Springfield", "62704"]),
    ("es", "nueva dirección: Calle Sierpes 4, planta 3, puerta izquierda, 41004 Sevilla",
     ["Sierpes", "planta 3", "izquierda", "41004", "Sevilla"]),
    ("en", "please send it to 221B Baker Street, London NW1 6XE", ["221B", "Baker", "London", "NW1"]),
    ("en", "new address 1600 Pennsylvania Ave, Apt 4B, Washington, DC 20500", ["Pennsylvania", "4B", "Washington", "20500"]),
    ("en", "deliver to 12 MG Road, 3rd floor, Bengaluru 560001", ["MG Road", "3rd floor", "Bengaluru", "560001"]),
    ("en", "change my address to 42 Elm St, Unit 7, Austin, TX 78701", ["Elm", "Unit 7", "Austin", "78701"]),
    ("en", "flat 9C, Prestige Towers, 5th Cross, Indiranagar", ["9C", "Prestige", "5th Cross", "Indiranagar"]),
    ("hi-Latn", "mera address hai house no 23, gali no 4, Lajpat Nagar, Delhi 110024",
     ["23", "gali no 4", "Lajpat", "Delhi", "110024"]),
    ("hi-Latn", "flat 302 B wing, sector 15, Kharghar, Shiv mandir ke paas", ["302", "B wing", "sector 15", "Kharghar", "Shiv"]),
    ("hi-Latn", "H.No 5-2-1, Ashok Vihar phase 2, near Hanuman mandir", ["5-2-1", "Ashok", "Hanuman"]),
    ("hi-Latn", "address badal do: gaon Rampur, tehsil Sadar, dist. Meerut 250001", ["Rampur", "Sadar", "Meerut", "250001"]),
    ("hi-Latn", "bhaiya parcel plot 7, Nehru Marg pe de dena", ["plot 7", "Nehru"]),
]

# What the LLM needs to read the intent stays as written: dates, times, order numbers, everyday words.
KEPT = [
    "where is my order, is it on the way?",
    "está en camino mi pedido desde hace 3 días?",
    "reschedule to 2026-12-01 please",
    "entregar el 01/12/2026 por la tarde",
    "mi pedido 12345 no ha llegado",
    "My order #45678 is late",
    "send it via sms, the main thing is the date",
    "kal deliver kar do, 2 baje ke baad",
    "the road is blocked, come tomorrow",
    "no estaré en casa el sábado",
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _sent(fake: FakeOpenAI) -> str:
    """Everything the fake received, as text (the whole request, not only the message field)."""
    return "\n".join(json.dumps(request, ensure_ascii=False) for request in fake.requests)


@pytest.mark.parametrize(("locale", "text", "private"), ADDRESSES, ids=[f"{c[0]}:{c[1][:28]}" for c in ADDRESSES])
def test_an_address_never_reaches_the_llm(fake: FakeOpenAI, locale: str, text: str, private: list[str]) -> None:
    fake.reply_json({"intent": "change_address", "confidence": 0.8, "entities": []})
    context = Context(now=FROZEN, timezone="Asia/Kolkata", locale=locale.split("-")[0])
    result = classify_with_llm(text, context, api_key="sk-test", base_url=fake.base_url, model="fake-model",
                               min_confidence=1.01,  # consult the LLM whatever the local confidence
                               breaker=CircuitBreaker())
    assert len(fake.requests) == 1, "the message went to the LLM"
    assert result.source == "llm" and result.intent is Intent.CHANGE_ADDRESS
    sent = _sent(fake)
    assert [fragment for fragment in private if fragment in sent] == []
    assert "<ADDRESS>" in sent


@pytest.mark.parametrize("text", KEPT)
def test_what_is_not_an_address_is_sent_as_written(text: str) -> None:
    assert mask_private(text) == text


# ------------------------------------------------------------------ the customer's own name and address

NAME = "Zephyrine Quillbottom"
ADDRESS = {"line1": "Calle del Pez Volador 12", "line2": "", "landmark": "junto al Mercado de San Antón",
           "city": "Madrid", "postal_code": "28009", "country": "ES"}
# Words no pattern knows as an address; the local model is unsure of at least one of these messages.
CANDIDATES = ("pez volador quillbottom", "qwerty uiop pez volador quillbottom", "blorf zint zephyrine pez volador",
              "kwee snarf quillbottom volador")


def _unsure(candidates: tuple[str, ...]) -> str:
    for text in candidates:
        if classify(text).uncertain:
            return text
    pytest.fail("no candidate is uncertain for the current model; extend CANDIDATES")


def test_the_customers_own_name_and_address_never_reach_the_llm(settings: Settings, fake: FakeOpenAI) -> None:
    llm_settings = settings.model_copy(update={"openai_api_key": settings.openai_api_key.__class__("sk-test"),
                                               "openai_base_url": fake.base_url, "llm_model": "fake-model",
                                               "allow_private_urls": True})
    service = Service.create(llm_settings)
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(
            customer={"name": NAME, "locale": "es"}, shipping_address=ADDRESS)))
    fake.reply_json({"intent": "wismo", "confidence": 0.8, "entities": []})
    text = _unsure(CANDIDATES)
    handled = service.handle_inbound(InboundMessage(channel="console", text=text, phone="+919812345678",
                                                    provider_message_id=f"t-{uuid.uuid4()}"))
    assert len(fake.requests) == 1
    assert handled.turns[0].classification is not None and handled.turns[0].classification.source == "llm"
    sent = _sent(fake).lower()
    for fragment in ("zephyrine", "quillbottom", "pez", "volador"):
        assert fragment not in sent, fragment
    assert "<private>" in sent
