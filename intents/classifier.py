"""`classify(text, context)`: rules first, then the conversation's context, then the local model.

Order of precedence, and why:
1. button payloads (`/btn:<intent>[:<arg>]`) — the customer tapped something we sent; confidence 1.0;
2. carrier keywords, whole message only (STOP & co. -> opt_out; START/UNSTOP; HELP/INFO),
   returned with `source="keyword"` and a `keyword` entity so the gateway can act on them;
3. what the conversation is waiting for (`Context.expecting`): a menu pick, a score,
   yes/no, a date, an address part — "2", "haan", "saturday", "4B" mean something only there;
4. the local model; below its calibrated threshold the answer is `out_of_scope`
   (the model's guess is kept in `alternatives`), never a confident wrong action.

Synchronous, thread-safe and fast: the model is loaded (or trained, on the first
call after a data change) once per process behind a lock, and then kept in memory
even when it could not be saved. A service loads it with `get_model()` before it
serves, never on a customer's first message inside a database transaction. Must never print,
never touch the network, and never import anything outside `intents/` and its
third-party dependencies.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Protocol

from intents.entities import extract_all
from intents.text import guess_language, strip_accents
from intents.types import Classification, Context, Entity, Expecting, Intent

OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "end", "quit", "revoke", "optout", "opt-out", "opt out"}
)
START_KEYWORDS = frozenset({"start", "unstop"})
HELP_KEYWORDS = frozenset({"help", "info"})
_KEYWORD_SHAPE = re.compile(r"^\s*([a-z][a-z -]{1,14}?)\s*[.!]*\s*$")
_BUTTON = re.compile(r"^\s*/btn:([a-z_]+)(?::(.*))?\s*$", re.IGNORECASE)
_BUTTON_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}(?:@(?:morning|afternoon|evening))?$")
_BUTTON_WINDOWS = frozenset({"morning", "afternoon", "evening"})

ADDRESS_TYPES = frozenset({"flat_number", "floor", "building", "landmark", "postal_code"})
# Intents that a date/address/yes-no context must not override when the model is sure of them.
_STRONG = frozenset({Intent.CANCEL_ORDER, Intent.HUMAN, Intent.OPT_OUT, Intent.RETURN_REFUND})


class IntentModel(Protocol):
    threshold: float

    def probabilities(self, text: str) -> list[tuple[str, float]]: ...


_lock = threading.Lock()
_model: IntentModel | None = None


def get_model(progress: Callable[[str], None] | None = None) -> IntentModel:
    """The process-wide model (`DOORSTEP_NLU_MODEL=tfidf` by default, `minilm` with the embeddings extra)."""
    global _model
    model = _model
    if model is not None:
        return model
    with _lock:
        if _model is None:
            if os.environ.get("DOORSTEP_NLU_MODEL", "tfidf").lower() == "minilm":
                from intents.embeddings import load_or_train as load_embeddings

                _model = load_embeddings(progress=progress)
            else:
                from intents.model import load_or_train

                _model = load_or_train(progress=progress)
        return _model


def model_loaded() -> bool:
    """Whether this process already holds the model (classifying will not load or train it)."""
    return _model is not None


def reset_model() -> None:
    """Forget the loaded model (tests that switch `DOORSTEP_DATA_DIR` / `DOORSTEP_MODEL_DIR`)."""
    global _model
    with _lock:
        _model = None


def _keyword(text: str) -> str | None:
    m = _KEYWORD_SHAPE.match(text.lower())
    if not m:
        return None
    word = " ".join(m.group(1).split())
    if word in OPT_OUT_KEYWORDS:
        return "stop"
    if word in START_KEYWORDS:
        return "start"
    if word in HELP_KEYWORDS:
        return "help"
    return None


def _button(text: str, entities: tuple[Entity, ...], language: str) -> Classification | None:
    m = _BUTTON.match(text)
    if not m:
        return None
    name, arg = m.group(1).lower(), (m.group(2) or "").strip()
    try:
        intent = Intent(name)
    except ValueError:
        return Classification(Intent.OUT_OF_SCOPE, 0.0, (), language, "button")
    extra: list[Entity] = []
    if arg:
        start = len(text) - len(arg)
        if intent is Intent.RESCHEDULE and _BUTTON_DAY.match(arg):
            # A day (and optionally a window) tapped in a reschedule list: `2026-11-28` or `2026-11-28@evening`.
            day, _, window = arg.partition("@")
            extra.append(Entity("date", day, arg, start, len(text)))
            if window:
                extra.append(Entity("time_window", window, arg, start, len(text)))
        elif intent is Intent.RESCHEDULE and arg in _BUTTON_WINDOWS:
            extra.append(Entity("time_window", arg, arg, start, len(text)))
        elif intent is Intent.CHOICE and arg.isdigit():
            extra.append(Entity("choice", int(arg), arg, len(text) - len(arg), len(text)))
        else:
            extra.append(Entity("payload", arg, arg, len(text) - len(arg), len(text)))
    return Classification(intent, 1.0, tuple(extra), language, "button")


def _word_count(text: str) -> int:
    return len(re.findall(r"[^\W_]+", text))


def _with_context(
    context: Context,
    entities: tuple[Entity, ...],
    text: str,
    language: str,
    model_result: Callable[[], Classification],
) -> Classification | None:
    """A reading that only makes sense because of what the bot just asked, or None."""
    types = {e.type for e in entities}
    expecting = context.expecting
    if expecting is Expecting.CHOICE and "choice" in types:
        return Classification(Intent.CHOICE, 0.99, entities, language, "context")
    if expecting is Expecting.NUMBER and "number" in types:
        return Classification(Intent.CHOICE, 0.99, entities, language, "context")
    if expecting is Expecting.YES_NO and "yes_no" in types:
        answer = next(e.value for e in entities if e.type == "yes_no")
        intent = Intent.AFFIRM if answer == "yes" else Intent.DENY
        if _word_count(text) <= 3:
            return Classification(intent, 0.97, entities, language, "context")
        guess = model_result()
        if guess.intent in _STRONG and guess.confidence >= 0.6:
            return None
        return Classification(intent, 0.9, entities, language, "context", ((guess.intent, guess.confidence),))
    if expecting is Expecting.DATE and types & {"date", "time_window"}:
        guess = model_result()
        if guess.intent in _STRONG and guess.confidence >= 0.6:
            return None
        return Classification(
            Intent.RESCHEDULE, 0.95, entities, language, "context", ((guess.intent, guess.confidence),)
        )
    if expecting is Expecting.ADDRESS_PART and types & ADDRESS_TYPES:
        guess = model_result()
        if guess.intent in _STRONG and guess.confidence >= 0.6:
            return None
        return Classification(
            Intent.CHANGE_ADDRESS, 0.95, entities, language, "context", ((guess.intent, guess.confidence),)
        )
    return None


# Words that may surround an order reference in a message that is nothing but the
# reference: "A1003", "#1234", "order 55821", "my order A1003 status?", "pedido #A-1002".
_REF_FILLER = frozenset(
    {
        "my", "the", "order", "orders", "ord", "no", "num", "number", "id", "ref", "status", "update",
        "track", "tracking", "of", "for", "about", "please", "pls", "plz",
        "mi", "mis", "el", "del", "de", "pedido", "orden", "estado", "numero",
        "mera", "meri", "mere", "ka", "ki",
    }
)  # fmt: skip


def _order_ref_only(text: str, entities: tuple[Entity, ...], language: str) -> Classification | None:
    """A message that is only an order reference (plus "order"/"my order"/"status") asks about that order."""
    refs = [e for e in entities if e.type == "order_ref"]
    if not refs:
        return None
    rest = text
    for e in sorted(refs, key=lambda e: e.start, reverse=True):
        rest = rest[: e.start] + " " + rest[e.end :]
    words = re.findall(r"[^\W_]+", strip_accents(rest.lower()))
    if any(w not in _REF_FILLER for w in words) or re.search(r"[^\w\s#:.,?!¿¡-]", rest):
        return None
    kept = tuple(e for e in entities if e.type in ("order_ref", "choice", "number"))
    return Classification(Intent.WISMO, 0.95, kept, language, "rules")


_SHORT_REPLIES = frozenset({Intent.AFFIRM.value, Intent.DENY.value})
# A one-word affirm/deny reading without a yes/no word needs at least this confidence: as sure as
# a reading of unknown words must be (a lone product name or place read as "yes" confirms nothing).
_ONE_WORD_REPLY_MIN = 0.9
# A reading of unknown words is kept only when their character n-grams are this decisive
# ("naw" -> deny 0.94); weaker guesses on unknown words are refused.
_GIBBERISH_KEEP = 0.9
# ...and only when the model knows at least this many of their 3+-character n-grams: "xkcdq"
# matched nothing but the one-word length feature, which leans towards yes/no replies.
_GIBBERISH_MIN_EVIDENCE = 2
# An out-of-scope reading below this is flagged uncertain (the intent stays out_of_scope).
_OUT_OF_SCOPE_SURE = 0.5


def _is_gibberish(text: str, model: IntentModel) -> bool:
    """No word of the message is one the model was trained on, or a one-letter slip from one."""
    known = getattr(model, "known_word", None)
    if known is None:
        return False
    words = re.findall(r"[^\W\d_]+", strip_accents(text.lower()))
    return bool(words) and not any(known(w) for w in words)


_WHOLE_ADDRESS = ("new_address", "new_address_unsure")
_WHOLE_ADDRESS_CONFIDENCE = 0.8


def _model_reading(
    text: str, entities: tuple[Entity, ...], language: str, model: IntentModel
) -> Classification:
    ranked = model.probabilities(text)
    best_label, best_p = ranked[0]
    alternatives = tuple((Intent(label), p) for label, p in ranked[1:4])
    evidence = getattr(model, "ngram_evidence", None)
    thin = best_p < _GIBBERISH_KEEP or (evidence is not None and evidence(text) < _GIBBERISH_MIN_EVIDENCE)
    if thin and not entities and _is_gibberish(text, model):
        # "zzzq", "qwerty uiop": character n-grams alone can land anywhere, often on the
        # short replies (affirm/deny). Never act on them; keep the guess for the caller.
        return _refused(best_label, best_p, entities, language, alternatives)
    # One word that is not a yes/no word ("skip", "parso", "ergo") and only weakly looks
    # like a yes or a no: refusing beats acting on a confirmation nobody gave.
    weak_reply = (
        best_label in _SHORT_REPLIES
        and best_p < _ONE_WORD_REPLY_MIN
        and _word_count(text) == 1
        and not any(e.type == "yes_no" for e in entities)
    )
    # Leaning to out-of-scope without being sure of that either ("skip" at 0.46): still a refusal,
    # but marked uncertain so an LLM fallback, when configured, may read it.
    unsure_refusal = best_label == Intent.OUT_OF_SCOPE.value and best_p < _OUT_OF_SCOPE_SURE
    if best_p < model.threshold or weak_reply or unsure_refusal:
        # Unsure: refuse rather than act, but keep the guess for the caller / LLM fallback.
        return _refused(best_label, best_p, entities, language, alternatives)
    return Classification(Intent(best_label), best_p, entities, language, "model", alternatives)


def _refused(
    best_label: str,
    best_p: float,
    entities: tuple[Entity, ...],
    language: str,
    alternatives: tuple[tuple[Intent, float], ...],
) -> Classification:
    """An uncertain `out_of_scope` that keeps the model's guess first among the alternatives."""
    if best_label == Intent.OUT_OF_SCOPE.value:
        return Classification(Intent.OUT_OF_SCOPE, best_p, entities, language, "model", alternatives, uncertain=True)
    guessed = ((Intent(best_label), best_p), *alternatives)
    return Classification(Intent.OUT_OF_SCOPE, 1.0 - best_p, entities, language, "model", guessed, uncertain=True)


def _language(text: str, context: Context) -> str:
    language = guess_language(text)
    if language == "en" and context.locale in ("es", "hi-Latn") and _word_count(strip_accents(text)) <= 2:
        return context.locale  # "ok" from a Spanish-speaking customer is still Spanish
    return language


def classify(text: str, context: Context | None = None) -> Classification:
    """Intent, confidence, entities and language of one customer message."""
    return classify_using(get_model, text, context)


def classify_using(
    model_source: Callable[[], IntentModel], text: str, context: Context | None = None
) -> Classification:
    """`classify` with an explicit model (the benchmark compares candidate models this way)."""
    context = context or Context()
    language = _language(text, context)
    button = _button(text, (), language)
    if button is not None:
        return button
    keyword = _keyword(text)
    if keyword is not None:
        entity = Entity("keyword", keyword, text.strip(), 0, len(text))
        intent = {"stop": Intent.OPT_OUT, "start": Intent.GREET, "help": Intent.OUT_OF_SCOPE}[keyword]
        return Classification(intent, 1.0, (entity,), language, "keyword")

    entities = extract_all(text, context)
    cached: list[Classification] = []

    def model_result() -> Classification:
        if not cached:
            cached.append(_model_reading(text, entities, language, model_source()))
        return cached[0]

    in_context = _with_context(context, entities, text, language, model_result)
    if in_context is not None:
        return in_context
    by_ref = _order_ref_only(text, entities, language)
    if by_ref is not None:
        return by_ref
    if not text.strip():
        return Classification(Intent.OUT_OF_SCOPE, 1.0, (), language, "rules")
    result = model_result()
    if result.intent is Intent.OUT_OF_SCOPE and any(e.type in _WHOLE_ADDRESS for e in entities):
        # A whole new address with its cue ("ship to 88 Oakwood Drive, Springfield, IL 62704") is an address
        # change whatever the model leans to: the address flow reads it back whole and acts only on a clear
        # yes (or hands an unsure one to a person), so this reading costs at most one question.
        return Classification(Intent.CHANGE_ADDRESS, _WHOLE_ADDRESS_CONFIDENCE, entities, language, "model",
                              ((Intent.OUT_OF_SCOPE, result.confidence), *result.alternatives[:2]))
    return result
