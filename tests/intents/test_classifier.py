"""classify(): rules first, then context, then the model; thread safety and the public contract."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from intents import Classification, Context, Expecting, Intent, classify
from tests.intents.conftest import expecting


@pytest.mark.parametrize(
    "text", ["STOP", "stop", " Stop. ", "STOPALL", "UNSUBSCRIBE", "end", "QUIT", "revoke", "OPTOUT"]
)
def test_stop_keywords_whole_message_are_opt_out(text: str) -> None:
    result = classify(text)
    assert result.intent is Intent.OPT_OUT
    assert result.source == "keyword"
    assert result.confidence == 1.0
    assert result.entity("keyword") is not None and result.entity("keyword").value == "stop"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "keyword"), [("START", "start"), ("unstop", "start"), ("HELP", "help"), ("info", "help")]
)
def test_start_and_help_keywords_are_exposed_to_the_gateway(text: str, keyword: str) -> None:
    result = classify(text)
    assert result.source == "keyword"
    assert result.entity("keyword").value == keyword  # type: ignore[union-attr]


def test_keywords_only_count_as_the_whole_message() -> None:
    result = classify("please stop the delivery until monday")
    assert result.source != "keyword"
    assert classify("help me find my order").source != "keyword"


def test_keywords_win_over_context() -> None:
    assert classify("STOP", expecting(Expecting.YES_NO)).intent is Intent.OPT_OUT


@pytest.mark.parametrize(
    ("payload", "intent"),
    [
        ("/btn:affirm", Intent.AFFIRM),
        ("/btn:reschedule", Intent.RESCHEDULE),
        ("/btn:cod_confirm", Intent.COD_CONFIRM),
    ],
)
def test_button_payloads(payload: str, intent: Intent) -> None:
    result = classify(payload)
    assert (result.intent, result.confidence, result.source) == (intent, 1.0, "button")


def test_button_choice_and_unknown_payloads() -> None:
    result = classify("/btn:choice:2")
    assert result.intent is Intent.CHOICE and result.entity("choice").value == 2  # type: ignore[union-attr]
    unknown = classify("/btn:make_me_rich")
    assert unknown.intent is Intent.OUT_OF_SCOPE and unknown.confidence == 0.0


@pytest.mark.parametrize("text", ["yes", "haan ji", "sí claro", "ok", "Yes please", "👍", "theek hai"])
def test_yes_when_expecting_yes_no(text: str) -> None:
    result = classify(text, expecting(Expecting.YES_NO))
    assert result.intent is Intent.AFFIRM
    assert result.source == "context"


@pytest.mark.parametrize("text", ["no", "nahi", "nope", "no gracias", "nahi chahiye"])
def test_no_when_expecting_yes_no(text: str) -> None:
    assert classify(text, expecting(Expecting.YES_NO)).intent is Intent.DENY


def test_a_clear_request_beats_the_yes_no_context() -> None:
    result = classify("no, I want to cancel my order and get a refund", expecting(Expecting.YES_NO))
    assert result.intent in (Intent.CANCEL_ORDER, Intent.RETURN_REFUND, Intent.DENY)


def test_saturday_when_expecting_a_date_is_a_reschedule_with_a_date() -> None:
    result = classify("saturday", expecting(Expecting.DATE))
    assert result.intent is Intent.RESCHEDULE
    assert result.entity("date").value == "2026-11-21"  # type: ignore[union-attr]


def test_kal_shaam_when_expecting_a_date() -> None:
    result = classify("kal shaam", expecting(Expecting.DATE))
    assert result.intent is Intent.RESCHEDULE
    assert result.entity("date").value == "2026-11-19"  # type: ignore[union-attr]
    assert result.entity("time_window").value == "evening"  # type: ignore[union-attr]


def test_4b_when_expecting_an_address_part() -> None:
    result = classify("4B", expecting(Expecting.ADDRESS_PART))
    assert result.intent is Intent.CHANGE_ADDRESS
    assert result.entity("flat_number").value == "4B"  # type: ignore[union-attr]


def test_the_second_one_when_expecting_a_choice() -> None:
    result = classify("the second one", expecting(Expecting.CHOICE, "A1001", "A1002"))
    assert result.intent is Intent.CHOICE
    assert result.entity("choice").value == 2  # type: ignore[union-attr]
    assert classify("2", expecting(Expecting.CHOICE, "A1001", "A1002")).entity("choice").value == 2  # type: ignore[union-attr]


def test_a_score_when_expecting_a_number() -> None:
    result = classify("9", expecting(Expecting.NUMBER))
    assert result.intent is Intent.CHOICE
    assert result.entity("number").value == 9  # type: ignore[union-attr]


def test_deliver_it_saturday_evening_without_context(ctx: Context) -> None:
    result = classify("deliver it saturday evening", ctx)
    assert result.intent is Intent.RESCHEDULE
    assert result.entity("date").value == "2026-11-21"  # type: ignore[union-attr]
    assert result.entity("time_window").value == "evening"  # type: ignore[union-attr]
    assert result.source == "model"


@pytest.mark.parametrize(
    ("text", "intent", "language"),
    [
        ("where is my order??", Intent.WISMO, "en"),
        ("mera order kab aayega", Intent.WISMO, "hi-Latn"),
        ("¿dónde está mi pedido?", Intent.WISMO, "es"),
        ("can you deliver tomorrow instead", Intent.RESCHEDULE, "en"),
        ("kal deliver kar do", Intent.RESCHEDULE, "hi-Latn"),
        ("the flat number is 4B", Intent.CHANGE_ADDRESS, "en"),
        ("yes i confirm the cash on delivery order", Intent.COD_CONFIRM, "en"),
        ("cancel my order", Intent.CANCEL_ORDER, "en"),
        ("quiero cancelar mi pedido", Intent.CANCEL_ORDER, "es"),
        ("I want a refund", Intent.RETURN_REFUND, "en"),
        ("talk to a human", Intent.HUMAN, "en"),
        ("stop sending me messages", Intent.OPT_OUT, "en"),
        ("hello", Intent.GREET, "en"),
        ("thank you so much", Intent.THANKS, "en"),
        ("gracias", Intent.THANKS, "es"),
        ("what's the weather like in Delhi", Intent.OUT_OF_SCOPE, "en"),
    ],
)
def test_model_reads_plain_messages(text: str, intent: Intent, language: str) -> None:
    result = classify(text)
    assert result.intent is intent, result
    assert result.language == language


def test_low_confidence_becomes_out_of_scope_with_the_guess_kept() -> None:
    result = classify("purple elephant quantum banana")
    assert result.intent is Intent.OUT_OF_SCOPE
    if result.uncertain:
        assert result.alternatives and result.alternatives[0][0] is not Intent.OUT_OF_SCOPE


def test_empty_text_is_out_of_scope() -> None:
    assert classify("   ").intent is Intent.OUT_OF_SCOPE


def test_as_dict_is_json_ready(ctx: Context) -> None:
    data = classify("deliver on 28th", ctx).as_dict()
    assert {"intent", "confidence", "entities", "language"} <= set(data)
    assert {"type": "date", "value": "2026-11-28"}.items() <= data["entities"][0].items()


def test_classify_is_thread_safe_and_deterministic() -> None:
    texts = ["where is my order", "cancel it", "kal deliver karo", "gracias", "flat 4B"] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        results: list[Classification] = list(pool.map(classify, texts))
    again = [classify(t) for t in texts]
    assert [r.intent for r in results] == [r.intent for r in again]
