"""Scoring a classifier on a labelled `text,intent` CSV: accuracy, macro-F1, per-intent P/R/F1, confusions.

Pure computation over predictions (no scikit-learn needed): used by
`doorstep eval`, `bench/classify.py` and the tests. It must never feed
evaluation rows back into training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from intents.data import Example
from intents.types import Classification


@dataclass
class Miss:
    text: str
    gold: str
    predicted: str
    confidence: float


@dataclass
class EvalReport:
    n: int
    accuracy: float
    macro_f1: float
    per_intent: dict[str, dict[str, float]]
    confusion: dict[tuple[str, str], int]
    misses: list[Miss] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "n": self.n,
            "per_intent": self.per_intent,
        }

    def recall(self, label: str) -> float:
        return self.per_intent.get(label, {}).get("recall", 0.0)


def score(
    gold: Sequence[str], predicted: Sequence[str]
) -> tuple[float, float, dict[str, dict[str, float]], dict[tuple[str, str], int]]:
    """Accuracy, macro-F1 over the labels present in gold, per-label P/R/F1/support, confusion counts.

    Macro-F1 averages over the labels that occur in the gold file (like
    `sklearn.metrics.f1_score(average="macro", labels=gold_labels)`), so a file
    without, say, `reschedule` rows is not penalised for a label it cannot test.
    """
    pairs = Counter(zip(gold, predicted, strict=True))
    gold_counts = Counter(gold)
    pred_counts = Counter(predicted)
    per_intent: dict[str, dict[str, float]] = {}
    for label in sorted(gold_counts):
        tp = pairs[(label, label)]
        precision = tp / pred_counts[label] if pred_counts[label] else 0.0
        recall = tp / gold_counts[label]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": gold_counts[label],
        }
    n = len(gold)
    accuracy = sum(pairs[(label, label)] for label in gold_counts) / n if n else 0.0
    macro_f1 = sum(v["f1"] for v in per_intent.values()) / len(per_intent) if per_intent else 0.0
    return accuracy, macro_f1, per_intent, dict(pairs)


def evaluate(
    rows: Sequence[Example],
    classify_fn: Callable[[str], Classification],
    *,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    predictions: list[Classification] = []
    for i, row in enumerate(rows):
        predictions.append(classify_fn(row.text))
        if progress and (i + 1) % 50 == 0:
            progress(i + 1)
    gold = [r.intent for r in rows]
    predicted = [p.intent.value for p in predictions]
    accuracy, macro_f1, per_intent, confusion = score(gold, predicted)
    misses = [
        Miss(r.text, r.intent, p.intent.value, p.confidence)
        for r, p in zip(rows, predictions, strict=True)
        if r.intent != p.intent.value
    ]
    misses.sort(key=lambda m: -m.confidence)  # confident mistakes are the worst ones
    return EvalReport(len(rows), accuracy, macro_f1, per_intent, confusion, misses)
