"""Training-data and evaluation-file loading: `data/nlu.yml` (Rasa NLU YAML 3.1) and `text,intent` CSVs.

Only reads files. It must never write into `data/`, and never read anything
from the evaluation folder for training: eval CSVs are loaded only by
`load_eval_csv`, which the evaluation and benchmark code call.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from intents.types import INTENT_LABELS

# Rasa entity annotations: "[4B](flat_number)" or '[4B]{"entity": "flat_number"}'.
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


def data_dir() -> Path:
    """`$DOORSTEP_DATA_DIR`, else the repository's `data/` folder."""
    override = os.environ.get("DOORSTEP_DATA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "data"


def nlu_path() -> Path:
    return data_dir() / "nlu.yml"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Example:
    text: str
    intent: str


def strip_annotations(text: str) -> str:
    return _ANNOTATION.sub(r"\1", text)


def load_nlu(path: Path | None = None) -> list[Example]:
    """Every example of every `- intent:` block, annotations removed, in file order.

    Raises ValueError on an unknown intent label or a malformed file, so a typo in
    the data fails loudly at training time instead of silently shrinking a class.
    """
    import yaml  # lazy: only needed when (re)training

    source = path or nlu_path()
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or "nlu" not in document:
        raise ValueError(f"{source}: not a Rasa NLU file (no top-level 'nlu:')")
    examples: list[Example] = []
    for block in document["nlu"]:
        if not isinstance(block, dict) or "intent" not in block:
            continue  # synonyms, lookups, regexes
        label = str(block["intent"])
        if label not in INTENT_LABELS:
            raise ValueError(f"{source}: unknown intent {label!r}")
        raw = block.get("examples", "")
        if not isinstance(raw, str):
            raise ValueError(f"{source}: intent {label!r} has no 'examples: |' block")
        for line in raw.splitlines():
            line = line.strip()
            if not line.startswith("- "):
                continue
            text = strip_annotations(line[2:].strip())
            if text:
                examples.append(Example(text=text, intent=label))
    return examples


def load_eval_csv(path: Path) -> list[Example]:
    """Rows of a `text,intent[,source]` CSV, text kept exactly as written."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "intent"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs the columns text,intent")
        rows = [Example(text=row["text"], intent=row["intent"].strip()) for row in reader]
    unknown = sorted({r.intent for r in rows} - set(INTENT_LABELS))
    if unknown:
        raise ValueError(f"{path}: unknown intent labels {unknown}")
    return rows
