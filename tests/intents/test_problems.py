"""Problems told as statements are named (intents.problems), in every supported language."""

from __future__ import annotations

import pytest

from intents.problems import extract_problems
from intents.types import Context


@pytest.mark.parametrize(("text", "problem"), [
    ("it says delivered but i never got it", "not_received"),
    ("status shows delivered but nobody came", "not_received"),
    ("I haven't received my parcel yet", "not_received"),
    ("parcel mila hi nahi", "not_received"),
    ("order abhi tak nahi aaya", "not_received"),
    ("pone entregado pero no me ha llegado", "not_received"),
    ("you sent the wrong size", "wrong_item"),
    ("galat size bheja hai", "wrong_item"),
    ("me llegó la talla equivocada", "wrong_item"),
    ("the mug arrived broken", "damaged"),
    ("box was empty", "damaged"),
])
def test_a_problem_told_as_a_statement_is_named(text: str, problem: str) -> None:
    assert [e.value for e in extract_problems(text, Context())] == [problem]


@pytest.mark.parametrize("text", [
    "where is my order", "thanks, got it", "I received it, all good", "did not get any message about my order",
    "haan mil gaya", "ya me ha llegado, gracias",
])
def test_no_problem_is_invented(text: str) -> None:
    assert extract_problems(text, Context()) == []
