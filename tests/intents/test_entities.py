"""Entity extractors on a frozen clock (Wednesday 2026-11-18, 10:00 Asia/Kolkata)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from intents import Context, Expecting
from intents.entities import (
    extract_address_parts,
    extract_all,
    extract_choice,
    extract_dates,
    extract_number,
    extract_order_refs,
    extract_phones,
    extract_postal_codes,
    extract_time_windows,
    extract_yes_no,
)
from tests.intents.conftest import FROZEN, expecting


def values(entities: object, kind: str) -> list[object]:
    return [e.value for e in entities if e.type == kind]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("tomorrow", "2026-11-19"),
        ("deliver tmrw pls", "2026-11-19"),
        ("day after tomorrow", "2026-11-20"),
        ("kal deliver kar do", "2026-11-19"),
        ("parso aana", "2026-11-20"),
        ("next monday", "2026-11-23"),
        ("monday", "2026-11-23"),
        ("on wednesday", "2026-11-25"),  # a bare weekday is strictly after today
        ("28th", "2026-11-28"),
        ("the 5th", "2026-12-05"),  # already past this month -> next month
        ("this weekend", "2026-11-21"),
        ("mañana", "2026-11-19"),
        ("el sábado", "2026-11-21"),
        ("pasado mañana", "2026-11-20"),
        ("today", "2026-11-18"),
        ("aaj shaam", "2026-11-18"),
        ("in 3 days", "2026-11-21"),
        ("2 din baad", "2026-11-20"),
        ("next week", "2026-11-23"),
        ("deliver on 25 nov", "2026-11-25"),
        ("3 de diciembre", "2026-12-03"),
        ("25/11", "2026-11-25"),
        ("2026-12-01", "2026-12-01"),
        ("agle somvar", "2026-11-23"),
        ("el próximo viernes", "2026-11-20"),
    ],
)
def test_dates_resolve_against_the_frozen_clock(text: str, iso: str, ctx: Context) -> None:
    assert values(extract_dates(text, ctx), "date") == [iso]


def test_kal_is_yesterday_only_when_the_sentence_is_in_the_past(ctx: Context) -> None:
    assert values(extract_dates("delivery boy kal aaya tha", ctx), "date") == ["2026-11-17"]


def test_dates_use_the_context_timezone() -> None:
    # 20:00 UTC on the 18th is already the 19th in Kolkata: "tomorrow" is the 20th there.
    late = Context(now=datetime(2026, 11, 18, 20, 0, tzinfo=ZoneInfo("UTC")), timezone="Asia/Kolkata")
    assert values(extract_dates("tomorrow", late), "date") == ["2026-11-20"]
    utc = Context(now=datetime(2026, 11, 18, 20, 0, tzinfo=ZoneInfo("UTC")), timezone="UTC")
    assert values(extract_dates("tomorrow", utc), "date") == ["2026-11-19"]


def test_this_weekend_on_a_saturday_is_today() -> None:
    saturday = Context(
        now=datetime(2026, 11, 21, 9, 0, tzinfo=ZoneInfo("Asia/Kolkata")), timezone="Asia/Kolkata"
    )
    assert values(extract_dates("this weekend", saturday), "date") == ["2026-11-21"]


def test_no_date_in_plain_text(ctx: Context) -> None:
    assert extract_dates("where is my order", ctx) == []
    assert extract_dates("3rd floor", ctx) == []
    assert extract_dates("it takes 2 to 3 days", ctx) == []


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("morning", "morning"),
        ("in the afternoon", "afternoon"),
        ("saturday evening", "evening"),
        ("shaam ko", "evening"),
        ("por la mañana", "morning"),
        ("por la tarde", "afternoon"),
        ("after 6pm", "18:00-21:00"),
        ("after 6", "18:00-21:00"),
        ("6 baje ke baad", "18:00-21:00"),
        ("después de las 6", "18:00-21:00"),
        ("between 2 and 5", "14:00-17:00"),
        ("between 10am and 1pm", "10:00-13:00"),
        ("2 se 5 ke beech", "14:00-17:00"),
        ("entre las 2 y las 5", "14:00-17:00"),
        ("before 11am", "09:00-11:00"),
        ("at 3pm", "15:00-17:00"),
        ("at 5", "17:00-19:00"),
    ],
)
def test_time_windows(text: str, window: str, ctx: Context) -> None:
    assert values(extract_time_windows(text, ctx), "time_window") == [window]


def test_no_time_window_for_addresses_or_durations(ctx: Context) -> None:
    assert extract_time_windows("come at 12 MG Road", ctx) == []
    assert extract_time_windows("after 2 days", ctx) == []


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("order #A1001 where is it", "A1001"),
        ("where is order A1001", "A1001"),
        ("#1234", "1234"),
        ("status of order no. 55012", "55012"),
        ("pedido #A-1002", "A-1002"),
        ("A1001 kab aayega", "A1001"),
    ],
)
def test_order_refs(text: str, ref: str, ctx: Context) -> None:
    assert values(extract_order_refs(text, ctx), "order_ref") == [ref]


def test_flat_is_not_an_order_ref(ctx: Context) -> None:
    assert values(extract_all("flat B-402", ctx), "order_ref") == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("my pin is 560001", "560001"),
        ("pincode 560 034", "560034"),
        ("zip 10001", "10001"),
        ("zip code 94105-1234", "94105-1234"),
        ("postcode sw1a 1aa", "SW1A 1AA"),
        ("SW1A1AA", "SW1A 1AA"),
    ],
)
def test_postal_codes(text: str, code: str, ctx: Context) -> None:
    assert values(extract_postal_codes(text, ctx), "postal_code") == [code]


def test_order_number_is_not_a_postal_code(ctx: Context) -> None:
    assert extract_postal_codes("order 560001 is late", ctx) == []
    assert extract_postal_codes("i have 10001 problems", ctx) == []  # 5 digits need a cue


def test_address_fragments(ctx: Context) -> None:
    found = extract_address_parts("flat 4B, 3rd floor, Green Park Apartments opposite SBI ATM", ctx)
    assert values(found, "flat_number") == ["4B"]
    assert values(found, "floor") == [3]
    assert values(found, "building") == ["Green Park Apartments"]
    assert values(found, "landmark") == ["opposite SBI ATM"]


@pytest.mark.parametrize(
    ("text", "landmark"),
    [
        ("near the temple", "near the temple"),
        ("it's behind the petrol pump, please", "behind the petrol pump"),
        ("mandir ke paas wala ghar", "mandir ke paas"),
        ("cerca de la iglesia", "cerca de la iglesia"),
    ],
)
def test_landmarks(text: str, landmark: str, ctx: Context) -> None:
    assert values(extract_address_parts(text, ctx), "landmark") == [landmark]


def test_floors_and_buildings(ctx: Context) -> None:
    assert values(extract_address_parts("ground floor", ctx), "floor") == [0]
    assert values(extract_address_parts("floor 12", ctx), "floor") == [12]
    assert values(extract_address_parts("piso 3", ctx), "floor") == [3]
    assert values(extract_address_parts("Tower B, wing C", ctx), "building") == ["Tower B", "wing C"]
    assert values(extract_address_parts("house no. 23", ctx), "flat_number") == ["23"]


def test_bare_flat_number_only_when_an_address_part_is_expected(ctx: Context) -> None:
    assert values(extract_address_parts("4B", expecting(Expecting.ADDRESS_PART)), "flat_number") == ["4B"]
    assert values(extract_address_parts("it's 12c", expecting(Expecting.ADDRESS_PART)), "flat_number") == [
        "12C"
    ]
    assert extract_address_parts("4B", ctx) == []


@pytest.mark.parametrize(
    ("text", "e164", "tz"),
    [
        ("call me on 98765 43210", "+919876543210", "Asia/Kolkata"),
        ("my number is +91-98765-43210", "+919876543210", "Asia/Kolkata"),
        ("+1 415 555 2671", "+14155552671", "Asia/Kolkata"),
        ("(415) 555-2671", "+14155552671", "America/New_York"),
        ("llámame al 612 345 678", "+34612345678", "Europe/Madrid"),
    ],
)
def test_phones_are_e164(text: str, e164: str, tz: str) -> None:
    context = Context(now=FROZEN, timezone=tz)
    assert values(extract_phones(text, context), "phone") == [e164]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", "yes"), ("Yes!", "yes"), ("haan ji", "yes"), ("sí claro", "yes"), ("ok", "yes"), ("👍", "yes"),
        ("theek hai", "yes"), ("vale", "yes"), ("no", "no"), ("nahi", "no"), ("nope", "no"), ("no gracias", "no"),
        ("nahi chahiye", "no"), ("👎", "no"),
    ],
)  # fmt: skip
def test_yes_no_in_three_languages(text: str, answer: str, ctx: Context) -> None:
    assert values(extract_yes_no(text, ctx), "yes_no") == [answer]


def test_no_yes_no_in_a_question(ctx: Context) -> None:
    assert extract_yes_no("where is my order", ctx) == []


def test_spanish_ya_is_already_not_yes(ctx: Context) -> None:
    assert values(extract_yes_no("ya no quiero el pedido", ctx), "yes_no") == ["no"]
    assert extract_yes_no("ya llegó el paquete", ctx) == []
    assert values(extract_yes_no("ya", ctx), "yes_no") == ["yes"]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("2", 2), ("#1", 1), ("option 2", 2), ("the second one", 2), ("2nd", 2), ("dusra wala", 2),
        ("el segundo", 2), ("the last one", 3), ("A1003", 3), ("#a1001", 1), ("the shoes", 2),
    ],
)  # fmt: skip
def test_choices(text: str, index: int) -> None:
    context = expecting(Expecting.CHOICE, "A1001", "A1002 Running shoes", "A1003")
    assert values(extract_choice(text, context), "choice") == [index]


def test_choice_out_of_range_or_not_expected(ctx: Context) -> None:
    assert extract_choice("5", expecting(Expecting.CHOICE, "a", "b")) == []
    assert extract_choice("2", ctx) == []


@pytest.mark.parametrize(("text", "score"), [("9", 9), ("10", 10), ("0", 0), ("8/10", 8), ("7 out of 10", 7)])
def test_scores(text: str, score: int, ctx: Context) -> None:
    assert values(extract_number(text, ctx), "number") == [score]


def test_no_score_above_ten(ctx: Context) -> None:
    assert extract_number("11", ctx) == []
    assert extract_number("give me 5 minutes", ctx) == []


def test_tonight_is_both_a_date_and_a_window(ctx: Context) -> None:
    found = extract_all("tonight", ctx)
    assert values(found, "date") == ["2026-11-18"]
    assert values(found, "time_window") == ["evening"]


def test_wall_clock_is_used_only_without_a_frozen_now() -> None:
    found = extract_all("tomorrow", Context(timezone="Asia/Kolkata"))
    assert len(values(found, "date")) == 1
