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
