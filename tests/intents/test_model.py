"""The n-gram model: deterministic training, numpy inference equal to scikit-learn's, on-disk cache keyed by data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intents.data import Example
from intents.model import _fit_sklearn, featurize, load_or_train, train

TINY = [
    *(Example(t, "wismo") for t in ["where is my order", "track my parcel", "order status", "when will it arrive",
                                     "is my package shipped", "where's my stuff", "delivery status?", "eta please"]),
    *(Example(t, "cancel_order") for t in ["cancel my order", "cancel it", "i don't want it", "please cancel",
                                            "cancel the purchase", "stop the order", "cancel order now", "cancel pls"]),
    *(Example(t, "out_of_scope") for t in ["tell me a joke", "weather today", "who won the match", "play music",
                                            "what time is it", "reset my password", "i like pizza", "capital of france"]),
]  # fmt: skip

YAML = """version: "3.1"
nlu:
{blocks}
"""


def write_nlu(path: Path, examples: list[Example]) -> None:
    by_intent: dict[str, list[str]] = {}
    for e in examples:
        by_intent.setdefault(e.intent, []).append(e.text)
    blocks = "".join(
        f"- intent: {intent}\n  examples: |\n" + "".join(f"    - {t}\n" for t in texts)
        for intent, texts in by_intent.items()
    )
    path.write_text(YAML.format(blocks=blocks), encoding="utf-8")


def test_featurize_has_words_bigrams_chars_and_length() -> None:
    feats = featurize("Where's my ORDER 😡")
    assert "w:order" in feats and "b:my_order" in feats and "c: or" in feats and "w:😡" in feats
    assert any(f.startswith("len:") for f in feats)


def test_training_is_deterministic() -> None:
    a, b = train(TINY), train(TINY)
    assert a.labels == b.labels
    assert a.threshold == b.threshold
    assert np.array_equal(a.coef, b.coef) and np.array_equal(a.intercept, b.intercept)


def test_numpy_inference_matches_scikit_learn() -> None:
    model = train(TINY, calibrate=False)
    pipeline = _fit_sklearn([e.text for e in TINY], [e.intent for e in TINY], c=model.meta["c"])
    for text in ["where is my parcel", "cancel my order please", "a joke about weather", "zzz"]:
        ours = dict(model.probabilities(text))
        theirs = dict(zip(pipeline.classes_, pipeline.predict_proba([text])[0], strict=True))
        for label, p in theirs.items():
            assert ours[label] == pytest.approx(p, abs=1e-4)


def test_cache_is_reused_and_rebuilt_when_the_data_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOORSTEP_MODEL_DIR", str(tmp_path / "cache"))
    data = tmp_path / "nlu.yml"
    write_nlu(data, TINY)
    notices: list[str] = []
    first = load_or_train(data, progress=notices.append)
    assert len(notices) == 1
    assert len(list((tmp_path / "cache").glob("nlu-*.pkl"))) == 1
    again = load_or_train(data, progress=notices.append)
    assert len(notices) == 1  # loaded from disk, not retrained
    assert np.array_equal(first.coef, again.coef)
    write_nlu(data, [*TINY, Example("where is my shipment", "wismo")])
    load_or_train(data, progress=notices.append)
    assert len(notices) == 2
    assert len(list((tmp_path / "cache").glob("nlu-*.pkl"))) == 2


def test_a_corrupt_cache_file_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_MODEL_DIR", str(tmp_path))
    data = tmp_path / "nlu.yml"
    write_nlu(data, TINY)
    load_or_train(data)
    (cached,) = tmp_path.glob("nlu-*.pkl")
    cached.write_bytes(b"not a pickle")
    model = load_or_train(data)
    assert model.probabilities("cancel my order")[0][0] == "cancel_order"


def test_unknown_intent_in_data_fails_loudly(tmp_path: Path) -> None:
    from intents.data import load_nlu

    bad = tmp_path / "nlu.yml"
    bad.write_text('version: "3.1"\nnlu:\n- intent: wismoo\n  examples: |\n    - where\n', encoding="utf-8")
    with pytest.raises(ValueError, match="wismoo"):
        load_nlu(bad)
