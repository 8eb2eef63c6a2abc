"""How far one training-line edit moves the eval figures; prints ONE JSON object on stdout.

The out-of-scope threshold is calibrated on the training data, so a data edit
can move it, and with it every out-of-scope recall. This script shows how far:
it trains the default model on `data/nlu.yml`, then again with one sampled line
removed (N times) and with one new line added (N times, from a pool of
hand-written lines below), and scores every gold file in the eval folder
(`*.csv`, not `review/`) through the full classifier pipeline, as
`doorstep eval` does. For each file it reports the largest move, in points
(0.01 = 1 point), of accuracy, macro-F1 and out-of-scope recall.

    .venv/bin/python bench/nlu_stability.py            # N=5 removals and 5 additions
    .venv/bin/python bench/nlu_stability.py --n 10 --seed 7

Eval folder: `$DOORSTEP_EVAL_DIR`, default `../shared/eval` relative to the
repository. Evaluation files are only read for scoring, never for training.
Each retraining takes 15-30 s on 2 cores; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from intents.classifier import classify_using  # noqa: E402
from intents.data import Example, load_eval_csv, load_nlu  # noqa: E402
from intents.evaluation import evaluate  # noqa: E402
from intents.model import LinearTextModel, train  # noqa: E402

EVAL_DIR = Path(os.environ.get("DOORSTEP_EVAL_DIR", ROOT.parent / "shared" / "eval"))
LIMIT_POINTS = 1.0

# New lines to add, one at a time: written for this script, not in data/nlu.yml, not from eval files.
ADDITIONS: tuple[tuple[str, str], ...] = (
    ("could you check how far my parcel has got", "wismo"),
    ("is the courier close to my house yet", "wismo"),
    ("bring it on the weekend instead of friday", "reschedule"),
    ("deliver after lunch on wednesday please", "reschedule"),
    ("the building name is sunrise heights, tower c", "change_address"),
    ("use my office address for this one", "change_address"),
    ("i'll keep the cash ready for the courier", "cod_confirm"),
    ("i no longer need this order, cancel it", "cancel_order"),
    ("the jeans don't fit, how do i send them back", "return_refund"),
    ("get a supervisor on this chat", "human"),
    ("don't send me these messages anymore", "opt_out"),
    ("hey there, good evening", "greet"),
    ("that sorted it, thanks a lot", "thanks"),
    ("yes, please go ahead", "affirm"),
    ("no, i would rather not", "deny"),
    ("remind me to water the plants", "out_of_scope"),
    ("how do i pay my credit card bill", "out_of_scope"),
    ("is my train to jaipur on time", "out_of_scope"),
    ("mujhe naya bank account kholna hai", "out_of_scope"),
    ("¿cuál es la capital de australia?", "out_of_scope"),
)


def figures(model: LinearTextModel, files: Sequence[Path]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for path in files:
        report = evaluate(load_eval_csv(path), lambda text: classify_using(lambda: model, text))
        entry = {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
        if "out_of_scope" in report.per_intent:
            entry["oos_recall"] = report.per_intent["out_of_scope"]["recall"]
        out[path.stem] = entry
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="lines to remove, and lines to add (each)")
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args(argv)

    files = sorted(EVAL_DIR.glob("*.csv"))
    if not files:
        print(json.dumps({"error": f"no eval files in {EVAL_DIR}"}))
        return 2
    examples = load_nlu()
    rng = random.Random(args.seed)
    edits: list[tuple[str, list[Example]]] = []
    for i in sorted(rng.sample(range(len(examples)), min(args.n, len(examples)))):
        gone = examples[i]
        edits.append((f"remove [{gone.intent}] {gone.text}", examples[:i] + examples[i + 1 :]))
    for text, intent in rng.sample(ADDITIONS, min(args.n, len(ADDITIONS))):
        edits.append((f"add [{intent}] {text}", [*examples, Example(text, intent)]))

    start = time.perf_counter()
    base_model = train(examples)
    base = figures(base_model, files)
    _log(f"base model: threshold {base_model.threshold} ({time.perf_counter() - start:.0f} s)")
    moves: dict[str, dict[str, Any]] = {
        name: {"max_points": 0.0, "figure": None, "edit": None} for name in base
    }
    thresholds = []
    for k, (label, data) in enumerate(edits, 1):
        model = train(data)
        thresholds.append(model.threshold)
        for name, entry in figures(model, files).items():
            for figure, value in entry.items():
                points = abs(value - base[name][figure]) * 100
                if points > moves[name]["max_points"] + 1e-9:
                    moves[name] = {"max_points": points, "figure": figure, "edit": label}
        _log(f"{k}/{len(edits)} {label}: threshold {model.threshold}")
    worst = max((m["max_points"] for m in moves.values()), default=0.0)
    result = {
        "eval_dir": str(EVAL_DIR),
        "training_lines": len(examples),
        "edits": {"removed": args.n, "added": min(args.n, len(ADDITIONS)), "seed": args.seed},
        "threshold": {"base": base_model.threshold, "after_edits": sorted(set(thresholds))},
        "base": {name: {k: round(v, 4) for k, v in entry.items()} for name, entry in base.items()},
        "max_move_points": {name: round(m["max_points"], 2) for name, m in moves.items()},
        "worst_edit": {name: {"figure": m["figure"], "edit": m["edit"]} for name, m in moves.items()},
        "limit_points": LIMIT_POINTS,
        "stable": worst <= LIMIT_POINTS,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["stable"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
