"""Entity extractors: dates, time windows, address fragments, phones, order refs, yes/no, choices.

Each extractor is a pure function of the message and the `Context` (which
carries the frozen clock and timezone used for relative dates), so every one
is unit-tested on a fixed `now`. Values follow the contract in issue 4 /
docs/nlu.md: dates are ISO `YYYY-MM-DD`, time windows are
`morning|afternoon|evening` or `HH:MM-HH:MM`, phones are E.164, yes/no is
`"yes"|"no"`, choices are 1-based ints.

Conventions (documented in docs/nlu.md):
- a bare weekday, and "next <weekday>", mean the next such day strictly after today;
- "this weekend" is the coming Saturday (today if it is Saturday or Sunday);
- "28th" is the next 28th on or after today;
- a day and month without a year ("20 nov", "3 de diciembre", "25/11") up to 60 days
  before today is that past date (the flow says it has passed); earlier ones are next year's;
- "after 6pm" is 18:00-21:00 (deliveries end at 21:00); "before 11" is 09:00-11:00
  (they start at 09:00); "at 3pm" is a two-hour window 15:00-17:00;
- hours written without am/pm: 1-7 are afternoon/evening, 8-11 morning, 12 noon.

This module must never call the network or read the wall clock when
`Context.now` is given; `dateparser` is imported lazily and only for explicit
calendar dates ("25 Nov", "3 de diciembre", "25/11").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from intents.address import BARE_FLAT, FLAT, extract_new_address
from intents.clock import local_now
from intents.polarity import mark_ruled_out
from intents.problems import extract_problems
from intents.text import contains_word, guess_language, strip_accents
from intents.types import Context, Entity, Expecting

DELIVERY_DAY_START = 9
DELIVERY_DAY_END = 21

_I = re.IGNORECASE


def _ent(type_: str, value: Any, m: re.Match[str], group: int | str = 0) -> Entity:
    return Entity(type=type_, value=value, text=m.group(group), start=m.start(group), end=m.end(group))


# --------------------------------------------------------------------------- dates

_WEEKDAYS: dict[str, int] = {}
for _idx, _names in enumerate(
    [
        "monday mon somvar somwar lunes",
        "tuesday tue tues mangalvar mangalwar martes",
        "wednesday wed weds budhvar budhwar miercoles",
        "thursday thu thur thurs guruvar guruwar veervar jueves",
        "friday fri shukravar shukrawar viernes",
        "saturday sat shanivar shaniwar sanivar sabado",
        "sunday ravivar raviwar itwar itvaar domingo",
    ]
):
    for _n in _names.split():
        _WEEKDAYS[_n] = _idx

_MONTHS = (
    "jan|january|feb|february|mar|march|apr|april|may|jun|june|jul|july|aug|august|sep|sept|september|"
    "oct|october|nov|november|dec|december|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|"
    "setiembre|octubre|noviembre|diciembre"
)

_WD = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_NUMWORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10,
    "ek": 1, "do": 2, "teen": 3, "char": 4, "chaar": 4, "paanch": 5, "panch": 5,
    "un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
}  # fmt: skip
_NUM = r"(\d{1,2}|one|two|three|four|five|six|seven|ten|ek|do|teen|chaar|char|paanch|panch|un|uno|una|dos|tres|cuatro|cinco)"

# Patterns run on the accent-stripped, lower-cased text (same length as the
# original, so spans map back). Order matters: longer phrases first.
_DATE_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(day after tomorrow|day after tmrw|day after tmr|overmorrow|pasado manana|parso|parson|parsoon)\b"
        ),
        "+2",
    ),
    (re.compile(r"\b(tomorrow|tomorow|tommorow|tommorrow|tmrw|tmrow|tmr|tomm|2morrow|2moro|kal)\b"), "+1"),
    (re.compile(r"(?<!la )\b(manana)\b"), "+1es"),
    (re.compile(r"\b(today|tonight|aaj|hoy|esta noche|esta tarde)\b"), "+0"),
    (
        re.compile(
            r"\b(this weekend|the weekend|weekend|is weekend|iss weekend|este fin de semana|el fin de semana|fin de semana|finde)\b"
        ),
        "weekend",
    ),
    (
        re.compile(
            r"\b(next week|agle hafte|agle week|next wk|la proxima semana|la semana que viene|proxima semana)\b"
        ),
        "nextweek",
    ),
    (re.compile(rf"\b(?:in|after|en|dentro de)\s+{_NUM}\s+(?:days?|dias?)\b"), "ndays"),
    (re.compile(rf"\b{_NUM}\s+(?:din|dino|days?)\s+(?:baad|bad|me|mein|later)\b"), "ndays"),
    (
        re.compile(
            rf"\b(?:(?:next|this|coming|agle|agla|is|iss|el|este|el proximo|proximo)\s+)?({_WD})\b(?:\s+(?:que viene|next week|ko))?"
        ),
        "weekday",
    ),
]
_EXPLICIT_DATE = [
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?(?:\s+de)?\s+(?:{_MONTHS})\.?(?:\s+(?:de\s+)?\d{{4}})?\b"),
    re.compile(rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(r"(?<![\d/.-])\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4})?(?![\d/.-])"),
]
_ORDINAL_DAY = re.compile(
    r"(?:\b(?:on\s+the|on|the|el|el dia|date|tarikh|tareekh|ko)\s+)?\b(\d{1,2})(?:st|nd|rd|th)\b(?!\s*(?:floor|flr|fl|manzil|mala|maala|piso|one|wala|wali|option|item|order|time|attempt))(?:\s+(?:ko|tarikh|tareekh))?"
    r"|\b(?:on\s+the|el\s+dia|el)\s+(\d{1,2})\b(?!\s*(?:am|pm|baje|:|de\s+la|hrs?))"
    r"|\b(\d{1,2})\s+(?:tarikh|tareekh|tarik)\b"
)


def _next_weekday(today: date, weekday: int) -> date:
    days = (weekday - today.weekday()) % 7
    return today + timedelta(days=days or 7)


def _day_of_month(today: date, day: int) -> date | None:
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(3):
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return candidate
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return None


@lru_cache(maxsize=1)
def _dateparser() -> Any:
    import dateparser  # lazy: ~0.2 s import, only for explicit calendar dates

    return dateparser


def _parse_explicit(fragment: str, now: datetime) -> date | None:
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", fragment)
    if iso:
        try:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        except ValueError:
            return None
    numeric = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?", fragment)
    if numeric:
        # Day first (India, Spain, UK); month first only when the day slot cannot be a day.
        a, b = int(numeric.group(1)), int(numeric.group(2))
        day, month = (a, b) if a > 12 or b <= 12 else (b, a)
        if not numeric.group(3):
            return _without_year(now.date(), month, day)
        year = int(numeric.group(3))
        if year < 100:
            year += 2000
        try:
            return date(year, month, day)
        except ValueError:
            return None
    parsed = _dateparser().parse(
        fragment,
        languages=["en", "es"],
        settings={
            "RELATIVE_BASE": now.replace(tzinfo=None),
            "PREFER_DATES_FROM": "future",
            "PREFER_DAY_OF_MONTH": "first",
            "DATE_ORDER": "DMY",
        },
    )
    if parsed is None:
        return None
    found_date: date = parsed.date()
    if not re.search(r"\d{4}", fragment):
        return _without_year(now.date(), found_date.month, found_date.day)
    return found_date


# A day and month said without a year, up to this many days before today, is this
# year's (past) date: "20 nov" on 22 Nov is two days ago, so the reschedule flow can
# say the date has passed. Further back, it is next year's.
RECENT_PAST_DAYS = 60


def _without_year(today: date, month: int, day: int) -> date | None:
    """The date a day/month without a year means: a recent past one, else the next one on or after today."""
    candidates = []
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue  # 29 Feb outside a leap year
    recent = [d for d in candidates if today - timedelta(days=RECENT_PAST_DAYS) <= d < today]
    if recent:
        return recent[-1]
    upcoming = [d for d in candidates if d >= today]
    if upcoming:
        return upcoming[0]
    for year in range(today.year + 2, today.year + 9):  # 29 Feb: the next leap year
        try:
            return date(year, month, day)
        except ValueError:
            continue
    return None


def extract_dates(text: str, context: Context) -> list[Entity]:
    now = local_now(context)
    today = now.date()
    low = strip_accents(text.lower())
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []

    def free(m: re.Match[str]) -> bool:
        return all(m.end() <= s or m.start() >= e for s, e in taken)

    def add(m: re.Match[str], value: date) -> None:
        taken.append((m.start(), m.end()))
        found.append(Entity("date", value.isoformat(), text[m.start() : m.end()], m.start(), m.end()))

    for pattern in _EXPLICIT_DATE:
        for m in pattern.finditer(low):
            if not free(m):
                continue
            # "2-5" is a time range, "4/10" may be a score: a numeric date needs a cue or a year.
            if pattern is _EXPLICIT_DATE[3] and "/" not in m.group(0) and not re.search(r"\d{4}", m.group(0)):
                continue
            parsed = _parse_explicit(m.group(0), now)
            if parsed is not None:
                add(m, parsed)

    for pattern, kind in _DATE_RULES:
        for m in pattern.finditer(low):
            if not free(m):
                continue
            if kind == "+2":
                add(m, today + timedelta(days=2))
            elif kind == "+1":
                # "kal" is also "yesterday"; it means tomorrow when talking about a
                # delivery, unless the sentence is clearly in the past.
                if m.group(1) == "kal" and re.search(
                    r"\b(kal\s+(?:aaya|aayi|aya|ayi|mila|mili|tha|thi|gaya|gayi|hua|hui))\b", low
                ):
                    add(m, today - timedelta(days=1))
                else:
                    add(m, today + timedelta(days=1))
            elif kind == "+1es":
                add(m, today + timedelta(days=1))
            elif kind == "+0":
                add(m, today)
            elif kind == "weekend":
                wd = today.weekday()
                add(m, today if wd >= 5 else today + timedelta(days=5 - wd))
            elif kind == "nextweek":
                add(m, today + timedelta(days=7 - today.weekday()))
            elif kind == "ndays":
                raw = m.group(1)
                n = int(raw) if raw.isdigit() else _NUMWORDS.get(raw, 0)
                if 0 < n <= 60:
                    add(m, today + timedelta(days=n))
            elif kind == "weekday":
                weekday = _WEEKDAYS[m.group(1)]
                target = _next_weekday(today, weekday)
                if re.search(r"\b(next week|que viene)\b", m.group(0)) and target - today < timedelta(
                    days=7 - today.weekday()
                ):
                    target += timedelta(days=7)
                add(m, target)

    for m in _ORDINAL_DAY.finditer(low):
        if not free(m):
            continue
        raw = m.group(1) or m.group(2) or m.group(3)
        day_target = _day_of_month(today, int(raw))
        if day_target is not None:
            add(m, day_target)

    found.sort(key=lambda e: e.start)
    return found


# --------------------------------------------------------------------------- time windows

_PARTS_OF_DAY: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(?:por|en|de)\s+la\s+(manana)\b|\b(morning|mornin|morng|mrng|mrning|morn|subah|subha|suba|savere|early|am\b|a\.m\.)"
        ),
        "morning",
    ),
    (
        re.compile(
            r"\b(afternoon|aftrnoon|noon|lunch ?time|dopahar|dopehar|dophar|(?:por|en|de)\s+la\s+tarde|tarde|mediodia)\b"
        ),
        "afternoon",
    ),
    (
        re.compile(
            r"\b(evening|evng|eve|tonight|night|shaam|sham|raat|(?:por|en|de)\s+la\s+noche|noche|esta noche|after office|after work)\b"
        ),
        "evening",
    ),
]
_H = r"(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.|baje|bje)?(?!\s*(?:days?|din|dino|dias?|weeks?|hafte|semanas?|hours?|hrs?|ghante|horas?|minutes?|mins?|items?|orders?|pedidos?|times?|baar|veces))"
_RANGE = re.compile(
    rf"\b(?:between|btw|btwn|from|entre(?:\s+las)?|de(?:\s+las)?)?\s*{_H}\s*(?:-|to|and|till|until|se|y(?:\s+las)?|a(?:\s+las)?|–)\s*{_H}(?:\s*(?:ke\s+)?(?:beech|bich|baje|tak))?"
)
_AFTER = re.compile(
    rf"\b(?:after|aftr|post|despues\s+de(?:\s+las)?|a\s+partir\s+de(?:\s+las)?)\s+{_H}|\b{_H}\s+(?:ke\s+)?(?:baad|bad|ke bad|ke baad)\b"
)
_BEFORE = re.compile(
    rf"\b(?:before|by|b4|antes\s+de(?:\s+las)?)\s+{_H}|\b{_H}\s+(?:se\s+)?(?:pehle|pahle|phle|tak)\b"
)
_AT = re.compile(
    rf"\b(?:at|around|@|a\s+las|como\s+a\s+las)\s+{_H}|\b(\d{{1,2}})(?::(\d{{2}}))?\s*(am|pm|a\.m\.|p\.m\.|baje|bje)\b"
)


def _hour(raw: str, minute: str | None, suffix: str | None) -> tuple[int, int] | None:
    h = int(raw)
    mins = int(minute) if minute else 0
    if h > 23 or mins > 59:
        return None
    sfx = (suffix or "").replace(".", "")
    if sfx == "pm" and h < 12:
        h += 12
    elif sfx == "am" and h == 12:
        h = 0
    elif sfx not in ("am", "pm") and 1 <= h <= 7:
        h += 12  # nobody asks for a 3 a.m. delivery
    return h, mins


def _fmt(h: int, m: int = 0) -> str:
    return f"{min(h, 23):02d}:{m:02d}"


def extract_time_windows(text: str, context: Context) -> list[Entity]:
    low = strip_accents(text.lower())
    found: list[Entity] = []

    def emit(m: re.Match[str], value: str) -> None:
        found.append(Entity("time_window", value, text[m.start() : m.end()].strip(), m.start(), m.end()))

    m = _RANGE.search(low)
    if m and (
        m.group(3) or m.group(6) or re.search(r"between|btw|entre|beech|bich|from|baje|de las", m.group(0))
    ):
        a = _hour(m.group(1), m.group(2), m.group(3) or m.group(6))
        b = _hour(m.group(4), m.group(5), m.group(6))
        if a and b:
            if b <= a and b[0] + 12 <= 23:
                b = (b[0] + 12, b[1])
            if b > a:
                emit(m, f"{_fmt(*a)}-{_fmt(*b)}")
                return found
    m = _AFTER.search(low)
    if m:
        g = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        a = _hour(*g)
        if a:
            end = max(DELIVERY_DAY_END, a[0] + 1) if a[0] < 23 else 23
            emit(m, f"{_fmt(*a)}-{_fmt(end, 59 if end == 23 else 0)}")
            return found
    m = _BEFORE.search(low)
    if m:
        g = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        b = _hour(*g)
        if b and b[0] > DELIVERY_DAY_START:
            emit(m, f"{_fmt(DELIVERY_DAY_START)}-{_fmt(*b)}")
            return found
    m = _AT.search(low)
    if m:
        g = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        a = _hour(*g)
        after = low[m.end() :].strip()
        # "at 12 MG Road" is an address: a bare hour must end the clause or be followed by a time word.
        bare_ok = not after or re.match(
            r"([,.!?]|o'?clock|please|pls|today|tomorrow|tmrw|kal|aaj|or\b|and\b|on\b|hoy|manana)", after
        )
        if a and (g[2] or g[1] or bare_ok):
            emit(m, f"{_fmt(*a)}-{_fmt(a[0] + 2, a[1])}")
            return found
    # Every part of day mentioned, in order: "subah nahi, shaam ko" names two, and
    # intents.polarity decides which one is wanted.
    parts = [(pm, value) for pattern, value in _PARTS_OF_DAY for pm in pattern.finditer(low)]
    for pm, value in sorted(parts, key=lambda item: item[0].start()):
        emit(pm, value)
    return found


# --------------------------------------------------------------------------- order refs, phones

_ORDER_REF = re.compile(
    r"(?:\b(?:order|ordr|oder|odr|pedido|orden|ord|ref|reference|awb)\s*(?:no\.?|number|num|id|#|n[ºo°]\.?)?\s*[:#-]?\s*#?|#\s?)"
    r"([A-Za-z]{0,4}-?\d[A-Za-z0-9-]{2,19})\b",
    _I,
)
_BARE_REF = re.compile(r"\b([A-Z]{1,3}-?\d{3,10})\b")


def extract_order_refs(text: str, context: Context) -> list[Entity]:
    found: list[Entity] = []
    spans: list[tuple[int, int]] = []
    for m in _ORDER_REF.finditer(text):
        value = m.group(1).upper()
        if (
            re.fullmatch(r"\d{10,}", value)
            and len(value) >= 10
            and not text[m.start() : m.start(1)].strip().startswith(("order", "Order", "ORDER", "#"))
        ):
            continue  # a long digit run after "ref" is more likely a phone number
        found.append(_ent("order_ref", value, m, 1))
        spans.append((m.start(1), m.end(1)))
    for m in _BARE_REF.finditer(text):
        if any(s <= m.start(1) < e for s, e in spans):
            continue
        if re.fullmatch(r"[A-Z]{1,2}\d[A-Z\d]?", m.group(1)[:4]) and re.search(
            r"\s\d[A-Z]{2}\b", text[m.end() : m.end() + 5]
        ):
            continue  # looks like the outward half of a UK postcode
        before = text[max(0, m.start() - 12) : m.start()].lower()
        if re.search(r"(flat|apt|apartment|house|unit|room|block|tower|wing|no\.?)\s*[:#-]?\s*$", before):
            continue  # "flat B-402" is an address, not an order
        found.append(_ent("order_ref", m.group(1).upper(), m, 1))
    return found


def _region(context: Context) -> str:
    tz = context.timezone or ""
    if tz in ("Asia/Kolkata", "Asia/Calcutta"):
        return "IN"
    if tz.startswith("America/"):
        return {
            "America/Mexico_City": "MX",
            "America/Bogota": "CO",
            "America/Argentina/Buenos_Aires": "AR",
        }.get(tz, "US")
    return {"Europe/Madrid": "ES", "Europe/London": "GB"}.get(tz, "IN")


def extract_phones(text: str, context: Context) -> list[Entity]:
    if sum(ch.isdigit() for ch in text) < 7:
        return []
    import phonenumbers  # cheap after the first import; lazy for CLI start-up

    found: list[Entity] = []
    for match in phonenumbers.PhoneNumberMatcher(text, _region(context)):
        if not phonenumbers.is_valid_number(match.number):
            continue
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        found.append(Entity("phone", e164, match.raw_string, match.start, match.end))
    return found


# --------------------------------------------------------------------------- address fragments

_IN_PIN = re.compile(r"(?<![\d+])([1-9]\d{2})\s?(\d{3})(?![\d])")
_US_ZIP = re.compile(r"(?<![\d+])(\d{5})(?:-(\d{4}))?(?![\d-])")
_UK_POST = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?)\s*(\d[A-Z]{2})\b", _I)
_POSTAL_CUE = re.compile(
    r"\b(pin|pincode|pin code|zip|zipcode|zip code|postal|postcode|post code|codigo postal|cp)\b", _I
)
_ORDER_CUE = re.compile(r"(order|ordr|pedido|orden|#|ref|awb|tracking)\W*(no\.?|number|id)?\W*$", _I)


def extract_postal_codes(text: str, context: Context) -> list[Entity]:
    found: list[Entity] = []
    cue = bool(_POSTAL_CUE.search(text)) or context.expecting is Expecting.ADDRESS_PART
    taken: list[tuple[int, int]] = []
    for m in _UK_POST.finditer(text):
        outward, inward = m.group(1).upper(), m.group(2).upper()
        if not re.search(r"[A-Z]", outward[:1]) or (not cue and not m.group(0).isupper()):
            continue
        found.append(_ent("postal_code", f"{outward} {inward}", m))
        taken.append((m.start(), m.end()))
    for m in _IN_PIN.finditer(text):
        before = text[max(0, m.start() - 20) : m.start()]
        if _ORDER_CUE.search(before) or any(s <= m.start() < e for s, e in taken):
            continue
        found.append(_ent("postal_code", m.group(1) + m.group(2), m))
        taken.append((m.start(), m.end()))
    if cue:
        for m in _US_ZIP.finditer(text):
            before = text[max(0, m.start() - 20) : m.start()]
            if _ORDER_CUE.search(before) or any(s <= m.start() < e for s, e in taken):
                continue
            value = m.group(1) + (f"-{m.group(2)}" if m.group(2) else "")
            found.append(_ent("postal_code", value, m))
    return found


_ORDINAL_WORDS = {
    "ground": 0, "basement": -1, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "top": 99, "pehli": 1, "pehla": 1, "dusri": 2,
    "doosri": 2, "teesri": 3, "tisri": 3, "chauthi": 4, "primer": 1, "primero": 1, "segundo": 2,
    "tercer": 3, "tercero": 3, "cuarto": 4, "quinto": 5, "planta baja": 0, "bajo": 0,
}  # fmt: skip
_FLOOR = re.compile(
    r"\b(\d{1,3})\s*(?:st|nd|rd|th|º|°|o)?\s*(?:floor|flr|fl|floar|manzil|mala|maala|piso|planta)\b"
    r"|\b(?:floor|flr|piso|planta)\s*(?:no\.?|number)?\s*[:#-]?\s*(\d{1,3})\b"
    r"|\b(ground|basement|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|top|pehli|pehla|dusri|doosri|teesri|tisri|chauthi)\s+(?:floor|flr|manzil|mala|maala)\b"
    r"|\b(primer|segundo|tercer|cuarto|quinto|planta baja)\s*(?:piso|planta)?\b(?=\s*(?:piso|planta|$|,|\.))",
    _I,
)
_BUILDING_WORDS = (
    r"apartments?|apts|towers?|residency|residences|heights|complex|society|soc|enclave|building|bldg|plaza|"
    r"villas?|mansion|court|house|chambers|arcade|gardens?|kunj|niwas|bhavan|bhawan|sadan"
)
_BUILDING = re.compile(
    rf"\b((?:[A-Z][\w'&.-]*\s+){{1,3}}(?i:{_BUILDING_WORDS}))\b"
    r"|\b((?i:block|blk|tower|wing|bldg|building|edificio|torre|bloque)\s*[:#-]?\s*(?i:no\.?\s*)?[A-Z0-9]{1,3})\b"
    r"|\b((?i:edificio|torre|residencial|conjunto)\s+(?:[A-Z][\w'-]*\s?){1,3})",
)
_LANDMARK = re.compile(
    r"\b((?:opposite(?:\s+to)?|opp\.?|oppo|near(?:\s+to)?|nr\.?|nearby|behind|beside|besides|next\s+to|in\s+front\s+of|infront\s+of|"
    r"across\s+from|across|close\s+to|adjacent\s+to|cerca\s+de(?:l)?|frente\s+a(?:l)?|enfrente\s+de(?:l)?|al\s+lado\s+de(?:l)?|junto\s+a(?:l)?|"
    r"detras\s+de(?:l)?|detrás\s+de(?:l)?)\s+(?:the\s+|a\s+|an\s+|la\s+|el\s+)?[^,.;!?\n]{2,40}?)"
    r"(?=\s*(?:[,.;!?\n]|$|\band\b|\bpls\b|\bplease\b|\bpor favor\b|\by\b))"
    r"|\b((?:[^\s,.;!?]+\s+){1,4}(?:ke|ki|k)\s+(?:paas|pass|pas|saamne|samne|peeche|piche|peechhe|bagal|bagal\s+mein|aage|opposite))\b",
    _I,
)


def extract_address_parts(text: str, context: Context) -> list[Entity]:
    found: list[Entity] = []
    for m in FLAT.finditer(text):
        group = 1 if m.group(1) else 2
        value = re.sub(r"\s+", "", m.group(group)).upper()
        found.append(_ent("flat_number", value, m, group))
    if context.expecting is Expecting.ADDRESS_PART and not found:
        bare = BARE_FLAT.match(text)
        if bare and not re.fullmatch(r"\d{5,6}", bare.group(1).strip()):
            found.append(_ent("flat_number", re.sub(r"[\s-]+", "", bare.group(1)).upper(), bare, 1))
    for m in _FLOOR.finditer(text):
        if m.group(1) or m.group(2):
            floor_value = int(m.group(1) or m.group(2))
        else:
            floor_value = _ORDINAL_WORDS[(m.group(3) or m.group(4)).lower()]
        found.append(_ent("floor", floor_value, m))
    for m in _BUILDING.finditer(text):
        group = next(g for g in (1, 2, 3) if m.group(g))
        raw = m.group(group).strip()
        if group == 1 and raw.split()[0].lower() in {
            "the",
            "my",
            "a",
            "i",
            "in",
            "at",
            "near",
            "opposite",
            "behind",
        }:
            raw = " ".join(raw.split()[1:])
            if not raw or raw.split()[0].lower() in _BUILDING_WORDS.split("|"):
                continue
        found.append(
            Entity("building", raw, raw, m.start(group), m.start(group) + len(m.group(group).rstrip()))
        )
    for m in _LANDMARK.finditer(text):
        group = 1 if m.group(1) else 2
        raw = m.group(group).strip()
        found.append(Entity("landmark", raw, raw, m.start(group), m.start(group) + len(raw)))
    return found


# --------------------------------------------------------------------------- yes / no, choices, numbers

YES_WORDS = frozenset(
    [
        "yes",
        "y",
        "ya",
        "yah",
        "yeah",
        "yea",
        "yeh",
        "yep",
        "yup",
        "yess",
        "yesss",
        "yas",
        "sure",
        "ok",
        "okay",
        "okey",
        "okk",
        "okie",
        "k",
        "kk",
        "alright",
        "correct",
        "right",
        "confirm",
        "confirmed",
        "confirmo",
        "confirmado",
        "affirmative",
        "absolutely",
        "definitely",
        "certainly",
        "indeed",
        "fine",
        "done",
        "haan",
        "haa",
        "han",
        "ha",
        "haanji",
        "hanji",
        "hnji",
        "hn",
        "ji",
        "jee",
        "bilkul",
        "theek",
        "thik",
        "thk",
        "sahi",
        "zaroor",
        "zarur",
        "jarur",
        "pakka",
        "chalega",
        "chalo",
        "accha",
        "acha",
        "achha",
        "si",
        "sí",
        "claro",
        "vale",
        "dale",
        "correcto",
        "exacto",
        "perfecto",
        "bueno",
        "obvio",
    ]
)
NO_WORDS = frozenset(
    [
        "no",
        "n",
        "nope",
        "nah",
        "naa",
        "nay",
        "nein",
        "never",
        "negative",
        "not",
        "nahi",
        "nahin",
        "nai",
        "nhi",
        "na",
        "mat",
        "naah",
        "ni",
        "nhin",
        "galat",
        "tampoco",
        "nunca",
        "incorrecto",
    ]
)
_YES_PHRASES = re.compile(
    r"^\s*(?:yes|yeah|yep|haan|ha|han|si|sí|ok|okay)\b|\b(?:of course|go ahead|sounds good|that'?s right|por supuesto|claro que si|"
    r"haan ji|ha ji|ji haan|theek hai|thik hai|kar do|kardo|de do|confirm(?:ed)?|i do|that works|works for me|"
    r"sounds great|go for it|please do|do it|sure thing|that'?s fine|that is fine|me parece bien|est[aá] bien|"
    r"adelante|perfecto|ho jayega|chalega)\b",
    _I,
)
_NO_PHRASES = re.compile(
    r"^\s*(?:no|nope|nah|nahi|nahin|nhi|nai|na)\b|\b(?:not now|no thanks|no thank you|don'?t|do not|nahi chahiye|mat karo|"
    r"nahi karna|para nada|claro que no|de ninguna manera|not really)\b",
    _I,
)


def extract_yes_no(text: str, context: Context) -> list[Entity]:
    low = strip_accents(text.lower()).strip()
    words = re.findall(r"[^\W\d_]+", low)
    if not words:
        if re.fullmatch(r"\s*(👍|👌|✅|🙂|😊|👍🏻|👍🏼|👍🏽)+\s*", text):
            return [Entity("yes_no", "yes", text.strip(), 0, len(text))]
        if re.fullmatch(r"\s*(👎|❌|🙅)+\s*", text):
            return [Entity("yes_no", "no", text.strip(), 0, len(text))]
        return []
    first = words[0]
    if first == "ya" and len(words) > 1 and guess_language(text) == "es":
        words = words[1:]  # Spanish "ya" means "already": "ya no quiero" is a no, "ya llegó" neither
        first = words[0]
    if first in NO_WORDS or (len(words) <= 4 and _NO_PHRASES.search(low)):
        return [Entity("yes_no", "no", text.strip(), 0, len(text))]
    if first in YES_WORDS or (len(words) <= 4 and _YES_PHRASES.search(low)):
        return [Entity("yes_no", "yes", text.strip(), 0, len(text))]
    return []


_ORDINALS: dict[str, int] = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4, "fifth": 5,
    "5th": 5, "sixth": 6, "6th": 6, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "pehla": 1, "pehli": 1, "pehle": 1, "pahla": 1, "pahli": 1, "dusra": 2, "doosra": 2, "dusri": 2,
    "doosri": 2, "dusre": 2, "teesra": 3, "tisra": 3, "teesri": 3, "chautha": 4, "ek": 1, "do": 2, "teen": 3,
    "primero": 1, "primera": 1, "primer": 1, "segundo": 2, "segunda": 2, "tercero": 3, "tercera": 3,
    "tercer": 3, "cuarto": 4, "cuarta": 4, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4,
}  # fmt: skip


def extract_choice(text: str, context: Context) -> list[Entity]:
    """Which of `context.choices` the text picks, as a 1-based index (only when expecting a choice)."""
    if context.expecting is not Expecting.CHOICE:
        return []
    n = len(context.choices)
    low = strip_accents(text.lower()).strip()
    whole = Entity("choice", 0, text.strip(), 0, len(text))

    def pick(i: int) -> list[Entity]:
        if i >= 1 and (n == 0 or i <= n):
            return [Entity("choice", i, whole.text, 0, len(text))]
        return []

    m = re.fullmatch(
        r"(?:option|opt|no\.?|number|num|#|opcion|numero)?\s*#?\s*(\d{1,2})\s*[.)]?\s*(?:wala|wali|one|please|pls|hai)?\s*",
        low,
    )
    if m:
        return pick(int(m.group(1)))
    # An item name or order id among the choices wins over ordinals ("the second one").
    norm_choices = [strip_accents(c.lower()).strip() for c in context.choices]
    for i, choice in enumerate(norm_choices, start=1):
        if contains_word(low, choice):  # the whole message too; an empty choice matches nothing
            return pick(i)
    for i, choice in enumerate(norm_choices, start=1):
        ref = choice.lstrip("#")
        if ref and contains_word(low, ref):  # "#A123" too: "#" is no word character
            return pick(i)
    if re.search(r"\b(last|the last one|akhri|aakhri|last wala|ultimo|ultima)\b", low) and n:
        return pick(n)
    for word in re.findall(r"[^\W_]+", low):
        if word in _ORDINALS and (len(low.split()) <= 5 or word not in {"one", "do", "ek", "uno", "una"}):
            return pick(_ORDINALS[word])
    # Partial item-name match: every word of the text appears in exactly one choice.
    words = [
        w
        for w in re.findall(r"[^\W\d_]{3,}", low)
        if w not in {"the", "one", "wala", "wali", "please", "want"}
    ]
    if words:
        hits = [i for i, c in enumerate(norm_choices, start=1) if any(w in c for w in words)]
        if len(hits) == 1:
            return pick(hits[0])
    return []


_SCORE = re.compile(
    r"^\s*(\d{1,2})\s*(?:/\s*10|out of 10|de 10|mein se \d+|⭐+|stars?|estrellas?)?\s*[.!]?\s*$", _I
)


def extract_number(text: str, context: Context) -> list[Entity]:
    """A bare 0-10 score (NPS replies)."""
    m = _SCORE.match(text)
    if m and 0 <= int(m.group(1)) <= 10:
        return [_ent("number", int(m.group(1)), m, 1)]
    return []


# --------------------------------------------------------------------------- all together

EXTRACTORS: tuple[Callable[[str, Context], list[Entity]], ...] = (
    extract_phones,
    extract_address_parts,
    extract_postal_codes,
    extract_order_refs,
    extract_dates,
    extract_time_windows,
    extract_yes_no,
    extract_choice,
    extract_number,
)


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


_LOOSE = frozenset({"yes_no", "choice", "number", "landmark", "building"})


def _compatible(a: Entity, b: Entity) -> bool:
    """Whether two overlapping entities may both be kept ("tonight" is a date and a time window)."""
    return b.type in _LOOSE or {a.type, b.type} == {"date", "time_window"}


def extract_all(text: str, context: Context) -> tuple[Entity, ...]:
    """Every entity in the text; overlapping spans are resolved in favour of the more specific extractor."""
    result: list[Entity] = []
    for extractor in EXTRACTORS:
        for entity in extractor(text, context):
            if entity.type in ("yes_no", "choice", "number", "landmark", "building"):
                result.append(entity)  # whole-message or phrase-level readings coexist with spans
                continue
            if any(_overlaps(entity, kept) and not _compatible(entity, kept) for kept in result):
                continue
            result.append(entity)
    result.extend(extract_new_address(text, context))  # a whole address spans the parts found above
    result.extend(extract_problems(text, context))
    return tuple(_dedupe(mark_ruled_out(text, result)))


def _dedupe(entities: list[Entity]) -> Iterator[Entity]:
    seen: set[tuple[str, str]] = set()
    for e in entities:
        key = (e.type, repr(e.value))
        if key not in seen:
            seen.add(key)
            yield e
