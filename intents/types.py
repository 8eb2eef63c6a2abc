"""Types shared by the NLU and its callers.

This module must never import anything from the rest of the project: `intents/`
is a leaf package (see DESIGN.md) so it can be tested and benchmarked alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Intent(StrEnum):
    """The intent labels fixed by DESIGN.md. Never rename them."""

    WISMO = "wismo"
    RESCHEDULE = "reschedule"
    CHANGE_ADDRESS = "change_address"
    COD_CONFIRM = "cod_confirm"
    CANCEL_ORDER = "cancel_order"
    RETURN_REFUND = "return_refund"
    HUMAN = "human"
    OPT_OUT = "opt_out"
    GREET = "greet"
    THANKS = "thanks"
    AFFIRM = "affirm"
    DENY = "deny"
    OUT_OF_SCOPE = "out_of_scope"
    # Not a DESIGN.md label and never produced by the model: the answer to a
    # question the bot asked (a menu pick, a 0-10 score). Only returned when
    # `Context.expecting` is CHOICE or NUMBER, or for a `/btn:choice:N` payload.
    CHOICE = "choice"


#: The thirteen labels of DESIGN.md: what the model predicts and eval files use.
INTENT_LABELS: tuple[str, ...] = tuple(i.value for i in Intent if i is not Intent.CHOICE)


class Expecting(StrEnum):
    """What the conversation is waiting for; lets "yes", "saturday", "4B" be read in context."""

    NOTHING = "nothing"
    YES_NO = "yes_no"
    DATE = "date"
    ADDRESS_PART = "address_part"
    CHOICE = "choice"
    NUMBER = "number"
    FREE_TEXT = "free_text"


@dataclass(frozen=True)
class Entity:
    """One extracted value. `value` is JSON-serialisable (dates are ISO strings)."""

    type: str
    value: Any
    text: str = ""
    start: int = -1
    end: int = -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "value": self.value,
            "text": self.text,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Context:
    """What the caller knows when it asks for a classification.

    `now` and `timezone` anchor relative dates ("tomorrow", "kal"); `choices`
    are the labels of a list the bot just offered (order ids, item names,
    button payloads). `private` holds what the shop told us about the
    customer (name, address parts): never used to classify, only masked
    before a message leaves the process (the optional LLM fallback).
    """

    expecting: Expecting = Expecting.NOTHING
    choices: tuple[str, ...] = ()
    now: datetime | None = None
    timezone: str = "UTC"
    locale: str | None = None
    private: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Classification:
    intent: Intent
    confidence: float
    entities: tuple[Entity, ...] = ()
    language: str = "en"
    # keyword | button | rules | context | model | llm
    source: str = "rules"
    # Best guesses the classifier did not choose, most likely first (e.g. the
    # model's top intent when its confidence fell below the out-of-scope threshold).
    alternatives: tuple[tuple[Intent, float], ...] = field(default_factory=tuple)
    # True when the model's best guess fell below the calibrated threshold and was
    # replaced by out_of_scope: the flows may ask a clarifying question, and the
    # optional LLM fallback is consulted only for these.
    uncertain: bool = False
    # True when the optional LLM fallback was needed but could not answer (timeout,
    # error, circuit open): the bot should not guess, a person should look.
    llm_failed: bool = False

    def entity(self, type_: str) -> Entity | None:
        return next((e for e in self.entities if e.type == type_), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent.value,
            "confidence": round(self.confidence, 4),
            "entities": [e.as_dict() for e in self.entities],
            "language": self.language,
            "source": self.source,
            "alternatives": [[i.value, round(p, 4)] for i, p in self.alternatives],
            "uncertain": self.uncertain,
        }
