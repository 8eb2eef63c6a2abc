"""The CSAT flow's pure steps: a 1-5 from a button or the text is a rating; anything else is asked once."""

from __future__ import annotations

import pytest

from flows import csat
from flows.base import END, RateEscalation, Reply
from intents import Intent
from tests.flows.support import ctx


@pytest.mark.parametrize("text, entities, score", [
    ("4", (), 4), ("5/5", (), 5), ("I'd give it 3", (), 3), ("tap", (("choice", 2),), 2),
    ("0", (), None), ("6", (), None), ("great thanks", (), None), ("12345", (), None),
])
def test_reading_the_rating(text: str, entities: tuple[tuple[str, object], ...], score: int | None) -> None:
    assert csat.parse_score(ctx(text, Intent.CHOICE, *entities)) == score


def test_a_rating_is_stored_and_thanked_and_a_low_one_apologised_for() -> None:
    result = csat.rating({"escalation_id": 7}, ctx("5"))
    assert result.next_state == END and RateEscalation(escalation_id=7, score=5) in result.effects
    assert any(isinstance(e, Reply) and e.template == "csat.thanks" for e in result.effects)
    low = csat.rating({"escalation_id": 7}, ctx("1"))
    assert any(isinstance(e, Reply) and e.template == "csat.thanks_low" for e in low.effects)


def test_not_a_rating_is_asked_once_more_then_let_go() -> None:
    again = csat.rating({"escalation_id": 7}, ctx("what?"))
    assert again.next_state == csat.RATING and again.slots["asked_again"] is True and not again.understood
    gone = csat.rating(dict(again.slots), ctx("no idea"))
    assert gone.next_state == END and gone.effects == ()


def test_the_question_has_one_button_per_score() -> None:
    asked = csat.ask(3)
    [reply] = asked.effects
    assert isinstance(reply, Reply) and [p for _, p in reply.buttons] == [f"/btn:choice:{n}" for n in range(1, 6)]
    assert asked.slots == {"escalation_id": 3}
