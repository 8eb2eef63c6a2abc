"""Classifier problems found by the conversation-flow engineers in real conversations.

1. day/month without a year a little in the past is this year's (past) date;
2. "where is my <item>" is WISMO, in English, Hinglish and Spanish;
3. a message that is only an order reference is WISMO with `order_ref` (a pick when a choice is expected);
4. gibberish is out_of_scope, never affirm/deny, while real short replies still work.

Dates are resolved on a frozen clock: Sunday 22 November 2026, 10:00 in Bengaluru.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from intents import Context, Expecting, Intent, classify
from intents.entities import RECENT_PAST_DAYS, extract_dates

SUNDAY_22_NOV = datetime(2026, 11, 22, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata"))


def on(now: datetime, expecting: Expecting = Expecting.NOTHING, *choices: str) -> Context:
    return Context(expecting=expecting, choices=choices, now=now, timezone="Asia/Kolkata")


def dates(text: str, now: datetime = SUNDAY_22_NOV) -> list[str]:
    return [e.value for e in extract_dates(text, on(now))]


# --------------------------------------------------------------------------- 1. dates without a year


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("20 nov", "2026-11-20"),  # two days ago: this year's, so the flow can say it has passed
        ("deliver on 20 november", "2026-11-20"),
        ("nov 20", "2026-11-20"),
        ("20/11", "2026-11-20"),
        ("el 20 de noviembre", "2026-11-20"),
        ("1 oct", "2026-10-01"),  # 52 days back: still this year's
        ("1 sep", "2027-09-01"),  # 82 days back: well in the past, so next year's
        ("15/08", "2027-08-15"),
        ("22 nov", "2026-11-22"),  # today
        ("25 nov", "2026-11-25"),
        ("el 3 de diciembre", "2026-12-03"),
        ("3 de diciembre", "2026-12-03"),
        ("5 jan", "2027-01-05"),
        ("20 nov 2027", "2027-11-20"),  # an explicit year is kept as written
        ("20/11/2025", "2025-11-20"),
    ],
)
def test_day_and_month_without_a_year(text: str, iso: str) -> None:
    assert dates(text) == [iso]


def test_recent_past_crosses_the_new_year() -> None:
    jan_5 = datetime(2027, 1, 5, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert dates("28 dec", jan_5) == ["2026-12-28"]  # eight days ago, last year
    assert dates("10 jan", jan_5) == ["2027-01-10"]
    assert dates("1 oct", jan_5) == ["2027-10-01"]  # 96 days back: next October


def test_recent_past_window_boundary() -> None:
    assert RECENT_PAST_DAYS == 60
    # 60 days before 22 Nov is 23 Sep (this year's); 61 days before is 22 Sep (next year's).
    assert dates("23 sep") == ["2026-09-23"]
    assert dates("22 sep") == ["2027-09-22"]


def test_29_february_without_a_year_is_the_next_leap_day() -> None:
    assert dates("29 feb") == ["2028-02-29"]


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("28th", "2026-11-28"),
        ("on the 20th", "2026-12-20"),  # a bare day of the month stays the next one on or after today
        ("kal", "2026-11-23"),
        ("parso", "2026-11-24"),
        ("saturday", "2026-11-28"),
        ("sunday", "2026-11-29"),  # strictly after today
        ("el lunes", "2026-11-23"),
        ("agle somvar", "2026-11-23"),
    ],
)
def test_relative_dates_keep_working(text: str, iso: str) -> None:
    assert dates(text) == [iso]


def test_a_passed_date_still_reads_as_a_reschedule_when_a_date_is_expected() -> None:
    result = classify("20 nov", on(SUNDAY_22_NOV, Expecting.DATE))
    assert result.intent is Intent.RESCHEDULE
    dated = [e.value for e in result.entities if e.type == "date"]
    assert dated == ["2026-11-20"]
    assert date.fromisoformat(dated[0]) < SUNDAY_22_NOV.date()


def test_deliver_on_a_passed_date_is_a_reschedule_with_the_past_date() -> None:
    result = classify("please deliver on 20 nov", on(SUNDAY_22_NOV))
    assert result.intent is Intent.RESCHEDULE
    assert [e.value for e in result.entities if e.type == "date"] == ["2026-11-20"]


# --------------------------------------------------------------------------- 2. WISMO by item name


@pytest.mark.parametrize(
    "text",
    [
        "where are my headphones?",
        "where are my shoes",
        "where is my blender",
        "has my phone case shipped",
        "when will my guitar arrive",
        "mere joote kab aayenge",
        "mera helmet kab aayega",
        "meri kitaab abhi tak nahi aayi",
        "¿dónde están mis zapatillas?",
        "¿dónde está mi bicicleta?",
        "cuándo llega mi tostadora",
    ],
)
def test_where_is_my_item_is_wismo(text: str) -> None:
    result = classify(text, on(SUNDAY_22_NOV))
    assert result.intent is Intent.WISMO, (text, result)
    assert not result.uncertain


@pytest.mark.parametrize(
    "text",
    ["do you sell wireless headphones", "what size shoes should i order", "cuánto cuesta la bicicleta"],
)
def test_questions_about_a_product_itself_stay_out_of_scope(text: str) -> None:
    assert classify(text, on(SUNDAY_22_NOV)).intent is Intent.OUT_OF_SCOPE


# --------------------------------------------------------------------------- 3. a bare order reference


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("A1003", "A1003"),
        ("#1234", "1234"),
        ("order 55821", "55821"),
        ("my order A1003", "A1003"),
        ("order #A1003 status?", "A1003"),
        ("status A1003", "A1003"),
        ("pedido #A-1002", "A-1002"),
    ],
)
def test_a_message_that_is_only_an_order_reference_is_wismo(text: str, ref: str) -> None:
    result = classify(text, on(SUNDAY_22_NOV))
    assert result.intent is Intent.WISMO
    assert [e.value for e in result.entities if e.type == "order_ref"] == [ref]
    assert not result.uncertain


def test_a_bare_order_reference_is_wismo_even_when_a_yes_or_no_is_expected() -> None:
    result = classify("A1003", on(SUNDAY_22_NOV, Expecting.YES_NO))
    assert result.intent is Intent.WISMO
    assert result.intent is not Intent.AFFIRM


def test_an_order_reference_is_the_pick_when_a_choice_is_expected() -> None:
    result = classify("A1003", on(SUNDAY_22_NOV, Expecting.CHOICE, "A1001", "A1003"))
    assert result.intent is Intent.CHOICE
    assert [e.value for e in result.entities if e.type == "choice"] == [2]


def test_an_order_reference_inside_a_request_keeps_the_request() -> None:
    result = classify("cancel order A1003", on(SUNDAY_22_NOV))
    assert result.intent is Intent.CANCEL_ORDER
    assert [e.value for e in result.entities if e.type == "order_ref"] == ["A1003"]


# --------------------------------------------------------------------------- 4. gibberish vs short replies


@pytest.mark.parametrize("text", ["blorp", "zzzq", "qwerty uiop", "skip"])
@pytest.mark.parametrize("expecting", [Expecting.NOTHING, Expecting.YES_NO])
def test_gibberish_is_uncertain_out_of_scope(text: str, expecting: Expecting) -> None:
    result = classify(text, on(SUNDAY_22_NOV, expecting))
    assert result.intent is Intent.OUT_OF_SCOPE, result
    assert result.uncertain


def test_keyboard_mash_in_the_training_data_is_out_of_scope() -> None:
    # "asdfgh" is an out-of-scope training example, so the model is sure of it.
    assert classify("asdfgh", on(SUNDAY_22_NOV)).intent is Intent.OUT_OF_SCOPE


@pytest.mark.parametrize("text", ["blorp", "zzzq", "asdfgh", "qwerty uiop", "xkcdq", "pfffrt"])
def test_gibberish_is_never_affirm_or_deny(text: str) -> None:
    for expecting in (Expecting.NOTHING, Expecting.YES_NO):
        result = classify(text, on(SUNDAY_22_NOV, expecting))
        assert result.intent not in (Intent.AFFIRM, Intent.DENY), (text, expecting, result)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("ok", Intent.AFFIRM),
        ("k", Intent.AFFIRM),
        ("yes", Intent.AFFIRM),
        ("haan", Intent.AFFIRM),
        ("sí", Intent.AFFIRM),
        ("👍", Intent.AFFIRM),
        ("no", Intent.DENY),
        ("nahi", Intent.DENY),
    ],
)
def test_real_short_replies_still_work(text: str, intent: Intent) -> None:
    for expecting in (Expecting.NOTHING, Expecting.YES_NO):
        assert classify(text, on(SUNDAY_22_NOV, expecting)).intent is intent, (text, expecting)


@pytest.mark.parametrize(
    ("text", "intent"), [("cancle my ordr", Intent.CANCEL_ORDER), ("thx", Intent.THANKS)]
)
def test_typos_of_known_words_are_not_gibberish(text: str, intent: Intent) -> None:
    assert classify(text, on(SUNDAY_22_NOV)).intent is intent
