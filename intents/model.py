"""The default local intent model: char + word n-gram TF-IDF with multinomial logistic regression.

Training uses scikit-learn (imported lazily, only when a model has to be
built). The trained model is exported to plain numpy arrays plus a vocabulary
dict, so inference needs only numpy and this module's own featuriser: that
keeps `doorstep classify` cold start and per-message latency low.

Training is deterministic (folds fixed by a hash of each line, lbfgs converged tightly). The
out-of-scope threshold is calibrated on out-of-fold predictions over the
training data (each line held apart in one of 5 folds chosen by its hash), never on
evaluation files. Models are cached on disk, keyed by a hash of
`data/nlu.yml` and `MODEL_VERSION`, and rebuilt when either changes.

This module must never print to stdout, and never read evaluation data.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intents.data import Example, file_digest, load_nlu, nlu_path
from intents.text import normalize, tokens

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

# Bump when the featuriser, the learner or the calibration changes: cached models are rebuilt.
MODEL_VERSION = "tfidf-lr-7"
OUT_OF_SCOPE = "out_of_scope"
CV_FOLDS = 5
SEED = 20261122


def featurize(text: str) -> list[str]:
    """The features of one message: words, word bigrams, char 2-5-grams inside words, length bucket.

    Used by scikit-learn at training time (as the vectoriser's analyzer) and by
    `LinearTextModel` at inference time, so both always agree.
    """
    words = tokens(normalize(text))
    feats = [f"w:{w}" for w in words]
    padded = ["<s>", *words, "</s>"]
    feats.extend(f"b:{a}_{b}" for a, b in zip(padded, padded[1:], strict=False))
    for w in words:
        if len(w) == 1 and not w.isalnum():
            continue  # emojis are already word features
        marked = f" {w} "
        for n in range(2, 6):
            if n > len(marked):
                break
            feats.extend(f"c:{marked[i : i + n]}" for i in range(len(marked) - n + 1))
    count = len(words)
    feats.append(
        "len:"
        + (
            "0"
            if count == 0
            else "1"
            if count == 1
            else "2"
            if count == 2
            else "3-5"
            if count <= 5
            else "6-12"
            if count <= 12
            else "13+"
        )
    )
    return feats


@functools.lru_cache(maxsize=64)
def _features(text: str) -> tuple[str, ...]:
    """`featurize(text)`, kept for the few messages in hand: one reading of a message asks for its
    probabilities and its n-gram evidence, from the same features."""
    return tuple(featurize(text))


@dataclass
class LinearTextModel:
    """A trained linear model in numpy form: `probabilities(text)` without scikit-learn."""

    labels: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: NDArray[np.float32]
    coef: NDArray[np.float32]  # (n_features, n_labels): rows gathered per message
    intercept: NDArray[np.float32]
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def known_word(self, word: str) -> bool:
        """Whether the model saw this word in training, a known stem of it, or a word one slip away.

        Words of four letters or more also match when they start with a known word of
        four letters or more ("refunding", "goodnight"), or through their one-letter
        deletions (symmetric delete: one substitution, insertion, deletion or most swaps,
        so "cancle" and "shipp" are known, "blorp" and "asdfgh" are not).
        """
        w = normalize(word)
        if f"w:{w}" in self.vocabulary:
            return True
        if len(w) < 4:
            return False
        if any(f"w:{w[:k]}" in self.vocabulary for k in range(4, len(w))):
            return True  # a known stem: "refunding", "goodnight"
        index = self.__dict__.get("_deletes")
        if index is None:
            index = set()
            for feature in self.vocabulary:
                if feature.startswith("w:") and len(feature) >= 5:
                    v = feature[2:]
                    index.add(v)
                    index.update(v[:i] + v[i + 1 :] for i in range(len(v)))
            self.__dict__["_deletes"] = index
        return any(v in index for v in (w, *(w[:i] + w[i + 1 :] for i in range(len(w)))))

    def ngram_evidence(self, text: str) -> int:
        """How many distinct character n-grams of three or more characters the model knows in `text`.

        A message of unknown words read only through its length feature ("xkcdq": one
        known bigram) has no evidence; "naw" has some ("aw ", " na").
        """
        return sum(
            1 for f in set(_features(text)) if f.startswith("c:") and len(f) >= 5 and f in self.vocabulary
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_deletes"}

    def probabilities(self, text: str) -> list[tuple[str, float]]:
        """(label, probability) for every label, most likely first."""
        import numpy as np

        counts = Counter(f for f in _features(text) if f in self.vocabulary)
        logits: Any
        if counts:
            idx = np.fromiter((self.vocabulary[f] for f in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter(
                (1.0 + math.log(c) for c in counts.values()), dtype=np.float32, count=len(counts)
            )
            values = tf * self.idf[idx]
            norm = float(np.sqrt(np.dot(values, values)))
            if norm > 0:
                values /= norm
            logits = values @ self.coef[idx] + self.intercept
        else:
            logits = self.intercept.copy()
        logits = logits - logits.max()
        exp = np.exp(logits)
        probs = exp / exp.sum()
        order = np.argsort(-probs, kind="stable")
        return [(self.labels[i], float(probs[i])) for i in order]


# --------------------------------------------------------------------------- training


def _fit_sklearn(texts: Sequence[str], labels: Sequence[str], *, c: float) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(analyzer=featurize, sublinear_tf=True, min_df=1, dtype=__import__("numpy").float32),
        # lbfgs converged tightly reaches the one optimum of this convex problem, so the model is a
        # smooth function of the data: one training line more or less changes it a little. saga with
        # a loose tolerance (the earlier, faster choice) landed somewhere different on every data edit,
        # and moved eval figures by more than a point. C=100 separated out-of-scope best on held-apart data.
        LogisticRegression(C=c, max_iter=5000, class_weight="balanced", solver="lbfgs", tol=1e-5),
    )
    pipeline.fit(list(texts), list(labels))
    return pipeline


def fold_of(text: str, intent: str, folds: int = CV_FOLDS) -> int:
    """The held-apart fold of one training line, from a hash of the line itself.

    A line keeps its fold whatever else is added or removed, so one data edit
    changes one line's held-apart prediction, not a reshuffle of every fold
    (with a shuffled k-fold split, one extra line moved the chosen threshold).
    """
    digest = hashlib.sha256(f"{SEED}\n{intent}\n{normalize(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def folds_of(texts: Sequence[str], gold: Sequence[str], folds: int = CV_FOLDS) -> list[list[int]]:
    """Indices of the held-apart lines of each fold (see `fold_of`)."""
    out: list[list[int]] = [[] for _ in range(folds)]
    for i, (text, intent) in enumerate(zip(texts, gold, strict=True)):
        out[fold_of(text, intent, folds)].append(i)
    return out


# Thresholds tried, and how far either side the macro-F1 curve is averaged before its peak is taken.
THRESHOLD_STEPS = tuple(step / 100 for step in range(10, 91))
SMOOTHING = 6
# How much below the smoothed curve's peak a threshold may score and still pull the choice its way:
# about what one held-apart line changing its answer does to macro-F1 (one row of a class of ~250).
PEAK_TEMPERATURE = 0.0005


def choose_threshold(
    probabilities: Sequence[Sequence[float]], labels_order: Sequence[str], gold: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """The confidence threshold at the centre of the top of the smoothed held-apart macro-F1 curve.

    Below it, answers become out_of_scope. The raw curve is flat near its top (a
    few thousandths between thresholds 0.26 and 0.44), so its argmax jumped with
    single data edits. Two things keep the choice still: the curve is first
    averaged over +-0.06, and the threshold is then the soft-argmax of that
    average (each step weighted by exp((score - peak) / 0.0005)), a weighted
    centre of the near-best region that moves by a fraction of a step when one
    line changes the curve a little, where a plain argmax would jump a step or more.
    Returns the threshold and the held-apart scores at that threshold.
    """
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    top = [max(range(len(p)), key=lambda i, p=p: p[i]) for p in probabilities]  # type: ignore[misc]

    def predict(t: float) -> list[str]:
        return [labels_order[i] if probabilities[k][i] >= t else OUT_OF_SCOPE for k, i in enumerate(top)]

    curve = [float(f1_score(gold, predict(t), average="macro", zero_division=0)) for t in THRESHOLD_STEPS]
    smoothed = []
    for k in range(len(curve)):
        window = curve[max(0, k - SMOOTHING) : k + SMOOTHING + 1]
        smoothed.append(sum(window) / len(window))
    peak = max(smoothed)
    weights = [math.exp((value - peak) / PEAK_TEMPERATURE) for value in smoothed]
    t = round(sum(w * step for w, step in zip(weights, THRESHOLD_STEPS, strict=True)) / sum(weights), 4)
    pred = predict(t)
    oos_recall = float(recall_score([g == OUT_OF_SCOPE for g in gold], [p == OUT_OF_SCOPE for p in pred]))
    return t, {
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "oos_recall": oos_recall,
    }


def train(examples: Sequence[Example], *, c: float = 100.0, calibrate: bool = True) -> LinearTextModel:
    """Fit on every example; calibrate the out-of-scope threshold on out-of-fold predictions."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: these matrices are small, and on a busy 2-core machine
    # oversubscribed BLAS threads made training 3x slower.
    with threadpool_limits(limits=1):
        return _train(examples, c=c, calibrate=calibrate)


def _train(examples: Sequence[Example], *, c: float, calibrate: bool) -> LinearTextModel:
    import numpy as np

    texts = [e.text for e in examples]
    gold = [e.intent for e in examples]
    threshold, held_apart = 0.0, dict[str, float]()
    if calibrate:
        labels_order: list[str] = sorted(set(gold))
        oof: list[list[float]] = [[] for _ in texts]
        for test_idx in folds_of(texts, gold):
            held = set(test_idx)
            train_idx = [i for i in range(len(texts)) if i not in held]
            fold_model = _fit_sklearn([texts[i] for i in train_idx], [gold[i] for i in train_idx], c=c)
            fold_labels = list(fold_model.classes_)
            probs = fold_model.predict_proba([texts[i] for i in test_idx])
            for row, i in zip(probs, test_idx, strict=True):
                oof[i] = [
                    float(row[fold_labels.index(lab)]) if lab in fold_labels else 0.0 for lab in labels_order
                ]
        threshold, held_apart = choose_threshold(oof, labels_order, gold)
    pipeline = _fit_sklearn(texts, gold, c=c)
    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
    return LinearTextModel(
        labels=tuple(str(x) for x in classifier.classes_),
        vocabulary={str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
        idf=np.asarray(vectorizer.idf_, dtype=np.float32),
        coef=np.ascontiguousarray(classifier.coef_.T, dtype=np.float32),
        intercept=np.asarray(classifier.intercept_, dtype=np.float32),
        threshold=threshold,
        meta={"version": MODEL_VERSION, "n_examples": len(texts), "c": c, "held_apart": held_apart},
    )


# --------------------------------------------------------------------------- cache


# World-readable, owner-writable: see load_or_train.
CACHE_FILE_MODE = 0o644


def cache_dir() -> Path:
    """`$DOORSTEP_MODEL_DIR`, else `$XDG_CACHE_HOME/doorstep`, else `~/.cache/doorstep`."""
    override = os.environ.get("DOORSTEP_MODEL_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doorstep"


def cache_key(data_file: Path, version: str = MODEL_VERSION) -> str:
    digest = hashlib.sha256(f"{version}\n{file_digest(data_file)}".encode()).hexdigest()
    return digest[:20]


def load_or_train(
    data_file: Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> LinearTextModel:
    """The cached model for the current data, training (and caching) it first if needed.

    Safe with several processes: the file is written to a temporary name and
    renamed into place, so a reader sees either no model or a whole one.
    """
    source = data_file or nlu_path()
    path = cache_dir() / f"nlu-{MODEL_VERSION}-{cache_key(source)}.pkl"
    if path.exists():
        try:
            with path.open("rb") as handle:
                model = pickle.load(handle)
            if isinstance(model, LinearTextModel):
                return model
        except PermissionError:
            # Typically a model trained by another user (root at image build) with private permissions.
            log.warning("cannot read the cached intent model %s (permissions); training it again", path)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            log.warning("discarding unreadable cached model %s", path)
    if progress:
        progress(f"Training the intent model on {source.name} (first run after a data change)…")
    log.info("training intent model from %s", source)
    model = train(load_nlu(source))
    model.meta["data_sha256"] = file_digest(source)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".nlu-", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        # mkstemp makes the file private (0600); the model is no secret, and a model trained
        # by one user (root building an image) must load for another (the service's user).
        os.chmod(tmp, CACHE_FILE_MODE)
        os.replace(tmp, path)
        _prune(path.parent)
    except OSError as exc:
        # A read-only or foreign model dir still classifies: the process keeps this model in
        # memory (intents.classifier holds it), and only the next process trains again.
        log.warning(
            "could not save the intent model in %s (%s); keeping it in memory for this process. "
            "Set DOORSTEP_MODEL_DIR to a directory this user can write.",
            path.parent,
            exc.strerror or exc.__class__.__name__,
        )
    return model


KEEP_CACHED = 6


def _prune(directory: Path) -> None:
    """Keep the most recent few cached models (several checkouts may share one cache)."""
    cached = sorted(directory.glob("nlu-*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in cached[KEEP_CACHED:]:
        stale.unlink(missing_ok=True)
