"""Doorstep's NLU: intent classification and entity extraction (English, Hinglish, Spanish).

Public API (stable; the gateway and flows call only this):

    classify(text, context=None) -> Classification

Everything runs locally with no API key; `intents.llm.classify_with_llm` is the
optional fallback. This package never imports from bot/, flows/ or integrations/.
"""

from intents.classifier import classify, get_model
from intents.types import INTENT_LABELS, Classification, Context, Entity, Expecting, Intent

__all__ = [
    "INTENT_LABELS",
    "Classification",
    "Context",
    "Entity",
    "Expecting",
    "Intent",
    "classify",
    "get_model",
]
