"""data/nlu.yml: enough hand-written examples per intent and language, and nothing taken from eval files."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import yaml

from intents.data import load_nlu, nlu_path
from intents.text import normalize
from intents.types import INTENT_LABELS

EVAL_DIR = Path(__file__).resolve().parents[3] / "shared" / "eval"


def test_every_intent_has_60_english_20_hinglish_20_spanish_examples() -> None:
    document = yaml.safe_load(nlu_path().read_text(encoding="utf-8"))
    counts: Counter[tuple[str, str]] = Counter()
    for block in document["nlu"]:
        if "intent" in block:
            language = block["metadata"]["language"]
            counts[(block["intent"], language)] += sum(
                1 for line in block["examples"].splitlines() if line.strip().startswith("- ")
            )
    for intent in INTENT_LABELS:
        assert counts[(intent, "en")] >= 60, intent
        assert counts[(intent, "hi-Latn")] >= 20, intent
        assert counts[(intent, "es")] >= 20, intent


def test_loader_strips_entity_annotations() -> None:
    texts = {e.text for e in load_nlu()}
    assert "the flat number is 4B" in texts
    assert not any("](" in t for t in texts)


@pytest.mark.skipif(not EVAL_DIR.is_dir(), reason="shared/eval not present")
def test_no_training_example_is_an_evaluation_text() -> None:
    train = {normalize(e.text) for e in load_nlu()}
    leaked = []
    for path in EVAL_DIR.glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = normalize(row["text"])
                if len(text.split()) >= 3 and text in train:
                    leaked.append((path.name, row["text"]))
    assert not leaked, leaked[:10]
