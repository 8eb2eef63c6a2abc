"""A whole new address in one message: "send it to my mom's place instead - 45 Park Street, Kolkata 700016".

A full address is never a part of the old one. When a message carries a
street line with a house number, a city and a postal code, this extractor
returns them together as one `new_address` entity (line1, line2, city,
postal_code) so the address flow can read the whole address back and replace
the old one; merging its postal code into the old street would send the
parcel to an address that exists nowhere. When a message plainly gives a new
address but the parts cannot all be found with confidence, it returns
`new_address_unsure` and a person takes it.

The parts keep the customer's own words ("planta 3, puerta izquierda" stays
Spanish); nothing is translated or dropped. Postal codes after the city
(India: "Kolkata 700016", US: "Springfield, IL 62704") and before it (Spain,
Mexico: "28013 Madrid") are both read.

Pure standard library; runs on every message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from intents.types import Context, Entity

# "instead", "new address", "send it to …", "nueva dirección", "naya address": the customer means a new address.
NEW_ADDRESS_CUE = re.compile(
    r"\b(new address|different address|another address|other address|changed? (?:my|the) address|moved|shifted|"
    r"send (?:it )?to|deliver (?:it )?to|ship (?:it )?to|instead|my (?:mom|mother|dad|father|parents|office|friend|sister|"
    r"brother)'?s?|nueva direcci[oó]n|otra direcci[oó]n|env[ií]a(?:lo|mela)? a|m[aá]ndalo a|en vez de|"
    r"naya address|nayi address|dusr[ae] address|doosr[ae] address|naya pata|is address pe|is pate pe)\b",
    re.IGNORECASE,
)
_POSTAL = re.compile(r"(?<![\d-])([1-9]\d{2}\s?\d{3}|\d{5}(?:-\d{4})?)(?![\d-])")
# Where the address itself starts: after a "-" or ":" (the last one), else after the first
# "to", "at", "is", "a", "en", "pe" introducing it.
_STRONG_INTRO = re.compile(r"\s[-–—]\s|:\s*")
_WEAK_INTRO = re.compile(r"\b(?:to|at|is|a|en|pe|par)\s+")
_HOUSE_LINE = re.compile(r"\d")
_WORD = re.compile(r"[^\W\d_]{3,}")
_US_STATE = re.compile(r"^[A-Z]{2}$")
_LABEL = re.compile(r"^(?:my|mi|mis|mere|meri|mera|our|the|el|la)\b", re.IGNORECASE)



# --------------------------------------------------------------------------- address parts: the one home
# The flat-number, house-number and postal-code rules, shared by the entity extractor (intents/entities.py),
# the address flow (flows/address.py) and the orders API (an address with no house number or a postal code
# invalid for its country starts as `needs_clarification`).

# Postal codes valid per country (ISO 3166 alpha-2); other countries: any non-empty code.
POSTAL_PATTERNS: dict[str, re.Pattern[str]] = {
    "IN": re.compile(r"^[1-9][0-9]{5}$"),
    "US": re.compile(r"^[0-9]{5}(-[0-9]{4})?$"),
    "GB": re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$", re.I),
    "ES": re.compile(r"^[0-9]{5}$"),
    "MX": re.compile(r"^[0-9]{5}$"),
}
# "flat 4B", "house no. 23", "depto 4B", "flat number is 402", "h.no 12/3"
FLAT = re.compile(
    r"\b(?:flat|flt|apartment|apt|appt|apto|unit|house|hse|door|room|ghar|makan|casa|depto|dpto|departamento|suite)"
    r"\.?\s*(?:no\.?|number|num|nr|n[ºo°]\.?|#)?\s*(?:(?:is|es|hai)\s+)?[:#-]?\s*([A-Z]?\d{1,5}\s?[A-Z]?(?:[/-]\d{1,4})?|[A-Z]-?\d{1,4})\b"
    r"|\b(?:h\.?\s?no\.?|hno)\s*[:#-]?\s*(\d{1,5}[A-Z]?(?:[/-]\d{1,4})?)\b",
    re.IGNORECASE,
)
# A bare "4B" / "it's 402" answering "what is your flat number?"
BARE_FLAT = re.compile(
    r"^\s*(?:it'?s\s+|is\s+|es\s+(?:el\s+)?|hai\s+)?#?\s*([A-Z]?-?\d{1,5}\s?[A-Z]?|[A-Z]-?\d{1,4})\s*(?:hai|h|please|pls)?\s*[.!]?\s*$",
    re.IGNORECASE,
)
# A flat number anywhere in an answer to that question ("4B, second floor")
FLAT_IN_TEXT = re.compile(r"(?<![\w])([A-Z]?-?\d{1,5}\s?[A-Z]?(?:[/-]\d{1,4})?)(?![\w])", re.I)
# The flat label at the start of a street line ("Flat 4B, 12 MG Road"), replaced when a new flat number comes
LEADING_FLAT = re.compile(r"^\s*(?:flat|house|apt|apartment|h\.?\s?no\.?|door|unit)\s*[.:#-]?\s*[A-Z0-9/-]+\s*,?\s*", re.I)
_HOUSE_NUMBER = re.compile(r"\d")


def postal_code_valid(code: str, country: str) -> bool:
    """Whether `code` looks like a postal code of `country` (ISO 3166 alpha-2; unknown countries: non-empty)."""
    pattern = POSTAL_PATTERNS.get(country.upper())
    return bool(code.strip()) and (pattern is None or bool(pattern.match(code.strip())))


def has_house_number(address: Mapping[str, Any]) -> bool:
    return bool(_HOUSE_NUMBER.search(f"{address.get('line1', '')} {address.get('line2', '')}"))


def find_flat_number(text: str, *, asked: bool = False) -> str | None:
    """The flat number in `text` ("flat 4B" -> "4B"); with `asked` (the question was the flat number) also
    a bare number anywhere in the answer, but never a 5-6 digit postal code."""
    phrase = FLAT.search(text)
    if phrase:
        return re.sub(r"[\s-]+", "", phrase.group(1) or phrase.group(2)).upper()
    if asked:
        match = FLAT_IN_TEXT.search(text)
        if match and not re.fullmatch(r"\d{5,6}", match.group(1)):
            return re.sub(r"[\s-]+", "", match.group(1)).upper()
    return None

def _chunks(text: str) -> list[str]:
    return [c.strip(" .;") for c in re.split(r"[,\n]", text) if c.strip(" .;")]


def parse_whole_address(text: str) -> dict[str, str] | None:
    """line1/line2/city/postal_code when `text` holds a complete address, else None."""
    postal = None
    for m in _POSTAL.finditer(text):
        postal = m  # the last postal-code-looking number is the postal code ("45 Park Street … 700016")
    if postal is None:
        return None
    intro_end = 0
    for m in _STRONG_INTRO.finditer(text, 0, postal.start()):
        if _HOUSE_LINE.search(text[m.end():postal.start()]):
            intro_end = m.end()
    if not intro_end:
        for m in _WEAK_INTRO.finditer(text, 0, postal.start()):
            if _HOUSE_LINE.search(text[m.end():postal.start()]):
                intro_end = m.end()
                break
    code = re.sub(r"\s", "", postal.group(1))
    before = text[intro_end:postal.start()]
    after = re.split(r"[,.;!?\n]", text[postal.end():], maxsplit=1)[0].strip()
    chunks = _chunks(before)
    # Spain and Mexico write "28013 Madrid"; India "Kolkata 700016", the US "Springfield, IL 62704".
    state_before = bool(re.search(r"\b[A-Z]{2}\s*$", before))
    zip_first = len(code) == 5 and bool(_WORD.search(after)) and not state_before
    if zip_first:
        city = after if after and _WORD.search(after) else (chunks.pop() if chunks and not _HOUSE_LINE.search(chunks[-1]) else "")
    else:
        tail = before.rsplit(",", 1)[-1].strip() if "," in before else ""
        city = ""
        if chunks and tail and chunks[-1] == tail.strip(" .;"):
            city = chunks.pop()
            if _US_STATE.match(city) and chunks:  # "Springfield, IL 62704": the state stays with the city
                city = f"{chunks.pop()}, {city}"
        elif chunks:
            # "Kolkata 700016" inside the last chunk: the words before the code are the city.
            last = chunks.pop()
            words = last.split()
            city_words: list[str] = []
            while words and not _HOUSE_LINE.search(words[-1]) and len(city_words) < 3:
                city_words.insert(0, words.pop())
            city = " ".join(city_words)
            if words:
                chunks.append(" ".join(words))
    city = city.strip(" -–—.")
    if not chunks or not city or not _WORD.search(city) or _HOUSE_LINE.search(city):
        return None
    # "my office, 3rd floor, 80 Residency Road": a leading label is not part of the address.
    while len(chunks) > 1 and not _HOUSE_LINE.search(chunks[0]) and _LABEL.match(chunks[0]):
        chunks.pop(0)
    line1, rest = chunks[0], chunks[1:]
    if not _HOUSE_LINE.search(line1) or not _WORD.search(" ".join(chunks)):
        return None
    return {"line1": line1, "line2": ", ".join(rest), "city": city, "postal_code": code}


def extract_new_address(text: str, context: Context) -> list[Entity]:
    parsed = parse_whole_address(text)
    if parsed is not None:
        return [Entity("new_address", parsed, text.strip(), 0, len(text))]
    # Plainly a new address, but not one to guess at: a person takes it.
    if NEW_ADDRESS_CUE.search(text) and _HOUSE_LINE.search(text) and len(text.split()) >= 4:
        return [Entity("new_address_unsure", text.strip()[:500], text.strip(), 0, len(text))]
    return []
