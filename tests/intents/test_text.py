"""Text helpers the flows and entities share."""

from __future__ import annotations

import random
import re

import pytest

from intents.text import contains_word


@pytest.mark.parametrize(("text", "word", "found"), [
    ("where is a123", "a123", True),
    ("where is #a123?", "a123", True),
    ("where is a1234", "a123", False),     # a longer id is another order
    ("xa123 please", "a123", False),
    ("my_a123", "a123", False),            # "_" is a word character, as in re's \w
    ("héadphones", "headphones", False),
    ("the headphones, please", "headphones", True),
    ("blue mug and the mug", "mug", True),  # the second occurrence is a whole word
    ("anything", "", False),
])
def test_contains_word_finds_whole_words_only(text: str, word: str, found: bool) -> None:
    assert contains_word(text, word) is found


def test_contains_word_agrees_with_the_regular_expression_it_replaces() -> None:
    rng = random.Random(20261129)
    alphabet = "ab_ #1é-"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        assert contains_word(text, word) is bool(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)), (text, word)
