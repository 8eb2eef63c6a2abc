"""Anger detection: upset customers escalate, ordinary questions do not."""

from __future__ import annotations

import pytest

from intents.sentiment import anger_score, is_angry


@pytest.mark.parametrize(
    "text",
    [
        "this is the worst service ever",
        "you people are frauds, total scam",
        "WHERE IS MY ORDER!!! I HAVE BEEN WAITING FOR TEN DAYS",
        "bakwas service, 5 din ho gaye",
        "ghatiya delivery, chor log",
        "servicio pésimo, es una estafa",
        "I will file a complaint in consumer court",
    ],
)
def test_angry_messages(text: str) -> None:
    assert is_angry(text), anger_score(text)


@pytest.mark.parametrize(
    "text",
    [
        "where is my order?",
        "deliver it on saturday please",
        "OK",
        "YES",
        "the flat number is 4B",
        "mera order kab aayega",
        "¿dónde está mi pedido?",
        "thanks!!",
        "WHERE IS MY ORDER PLEASE TELL ME",  # caps lock alone is not anger
        "when will it come???",
        "",
    ],
)
def test_calm_messages(text: str) -> None:
    assert not is_angry(text), anger_score(text)
