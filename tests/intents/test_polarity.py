"""Ruled-out days and times (intents.polarity): a day the customer rules out is never "the date"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from intents.entities import extract_all
from intents.types import Context

# Monday 23 Nov 2026, 09:00 in Kolkata.
CONTEXT = Context(now=datetime(2026, 11, 23, 3, 30, tzinfo=UTC), timezone="Asia/Kolkata")


def _read(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    entities = extract_all(text, CONTEXT)
    values = {t: [str(e.value) for e in entities if e.type == t]
              for t in ("date", "date_excluded", "time_window", "time_window_excluded")}
    return values["date"], values["date_excluded"], values["time_window"], values["time_window_excluded"]


@pytest.mark.parametrize(("text", "wanted", "ruled_out"), [
    # English: the negation comes first.
    ("I'm not home on monday, can you deliver tuesday instead", ["2026-11-24"], ["2026-11-30"]),
    ("deliver it wednesday, not thursday", ["2026-11-25"], ["2026-11-26"]),
    ("Friday doesn't work for me, how about saturday", ["2026-11-28"], ["2026-11-27"]),
    ("tomorrow I'm not home", [], ["2026-11-24"]),
    ("nobody will be at home on thursday", [], ["2026-11-26"]),
    ("any day except saturday", [], ["2026-11-28"]),
    ("deliver on friday instead of thursday", ["2026-11-27"], ["2026-11-26"]),
    # Spanish: "no" before the verb after the day, or before the day.
    ("el martes no estoy en casa, ¿me lo traéis el miércoles?", ["2026-11-25"], ["2026-11-24"]),
    ("sábado no, mejor el lunes", ["2026-11-30"], ["2026-11-28"]),
    ("no puedo el jueves, el viernes sí", ["2026-11-27"], ["2026-11-26"]),
    # Hinglish: the negation follows the day.
    ("kal mat bhejo, parso bhejna", ["2026-11-25"], ["2026-11-24"]),
    ("nahi nahi, friday nahi saturday", ["2026-11-28"], ["2026-11-27"]),
    ("aaj ghar pe nahi hu, kal bhej do", ["2026-11-24"], ["2026-11-23"]),
    # Nothing is ruled out.
    ("no problem, monday is fine", ["2026-11-30"], []),
    ("koi baat nahi, kal bhej do", ["2026-11-24"], []),
    ("can you deliver on saturday", ["2026-11-28"], []),
])
def test_days_ruled_out_and_wanted(text: str, wanted: list[str], ruled_out: list[str]) -> None:
    dates, excluded, _, _ = _read(text)
    assert dates == wanted
    assert excluded == ruled_out


@pytest.mark.parametrize(("text", "wanted", "ruled_out"), [
    ("subah ghar pe koi nahi hoga", [], ["morning"]),
    ("subah nahi, shaam ko bhejna", ["evening"], ["morning"]),
    ("not in the morning, evening please", ["evening"], ["morning"]),
    ("por la mañana no puedo, mejor por la tarde", ["afternoon"], ["morning"]),
    ("plz delivr tmrw mrng", ["morning"], []),
    ("shaam ko", ["evening"], []),
    ("por la tarde", ["afternoon"], []),
])
def test_windows_ruled_out_and_wanted(text: str, wanted: list[str], ruled_out: list[str]) -> None:
    _, _, windows, excluded = _read(text)
    assert windows == wanted
    assert excluded == ruled_out


@pytest.mark.parametrize(("text", "wanted", "ruled_out"), [
    ("I'm out of town until thursday, please deliver on friday", ["2026-11-27"], ["2026-11-26"]),
    ("budhvar tak bahar hu, shukravar ko bhejna", ["2026-11-27"], ["2026-11-25"]),
    ("estoy fuera hasta el jueves, el viernes sí", ["2026-11-27"], ["2026-11-26"]),
])
def test_a_limit_rules_the_day_out(text: str, wanted: list[str], ruled_out: list[str]) -> None:
    dates, excluded, _, _ = _read(text)
    assert dates == wanted
    assert excluded == ruled_out
