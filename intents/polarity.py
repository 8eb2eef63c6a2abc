"""Which mentioned days and times the customer rules out.

"I'm not home on monday, can you deliver tuesday instead", "el martes no estoy
en casa, ¿me lo traéis el miércoles?", "kal mat bhejo, parso bhejna", "friday
nahi saturday": every one of them names a day that must never be booked. The
extractors find the days; this module decides, per mention, whether it is
wanted or ruled out, and renames ruled-out ones (`date` -> `date_excluded`,
`time_window` -> `time_window_excluded`) so no code that asks for "the date"
can ever pick one up by mistake.

How a negation finds its day. Sentences are cut into clauses at punctuation
and at contrast words ("but", "instead", "pero", "lekin"). Inside a clause a
negation word attaches to one mention:
- Hindi/Hinglish negation follows what it negates ("kal mat bhejo", "friday
  nahi saturday", "subah ghar pe koi nahi hoga"): it takes the mention just
  before it, else the one just after.
- English and Spanish negation comes first ("not on monday", "no puedo el
  martes"), but Spanish also says "el martes no estoy": they take the mention
  just after, else the one just before.
"instead of", "except", "en vez de", "ke alawa" rule out the mention they
govern, and so does a limit ("away until Thursday", "budhvar tak bahar hu"):
the customer is not there that day either. When the reading is unsure, the day counts as ruled out: the cost is
one more question, never a wrong booking.

Pure standard library; runs on every message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from intents.text import strip_accents
from intents.types import Entity

POLAR_TYPES = ("date", "time_window")
EXCLUDED_SUFFIX = "_excluded"

# Phrases that contain a negation word but negate nothing ("no problem, monday is fine").
_NOT_A_NEGATION = re.compile(
    r"\b(no problem|no prob|no worries|not a problem|no issue|no hay problema|no pasa nada|no te preocupes|"
    r"koi baat nahi|koi baat nhi|koi dikkat nahi|koi problem nahi|not sure|no se|why not|"
    r"no later than|not later than|if not|or not)\b"
)
_CLAUSE_BREAK = re.compile(
    r"[,.;!?¿¡\n]|(?<!anything )(?<!all )\b(?:but|instead(?! of)|rather(?! than)|however|so|pero|sino|mejor|lekin|balki|magar|toh|"
    r"can you|could you|can u|would you|pls|please|plz|por favor|puedes|podeis|podrian)\b"
)
# Negation that follows what it negates (Hindi/Hinglish word order).
_POSTPOSED = re.compile(r"\b(nahi|nahin|nhi|nai|nahi hoga|mat|na|nako|ke alawa|ke alava|ke siwa|ke siva|ke sivay|tak bahar|tak nahi)\b")
# Negation that precedes what it negates (English, Spanish), or sits after it in Spanish.
_PREPOSED = re.compile(
    r"\b(not|no|never|nobody|no one|noone|nadie|nunca|cant|can't|cannot|won't|wont|don't|dont|didn't|isn't|"
    r"doesn't|doesnt|does not|isnt|not possible|impossible|no good|no way|"
    r"unavailable|busy|away|except|excepto|menos|salvo|besides|other than|instead of|rather than|"
    r"en vez de|en lugar de|anything but|out of town until|away until|away till|away til|until|till|hasta el|fuera hasta)\b"
)
_MAX_GAP_AFTER = 5  # words between a preposed negation and its mention ("not home on monday")
_MAX_GAP_BEFORE = 4  # words between a mention and a negation after it ("subah ghar pe koi nahi")
_WORD = re.compile(r"\w+")


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def _clauses(low: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _CLAUSE_BREAK.finditer(low):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(low)))
    return [(a, b) for a, b in spans if b > a]


def _gap(low: str, a: int, b: int) -> int:
    return len(_WORD.findall(low[a:b])) if b > a else 0


def ruled_out(text: str, entities: Iterable[Entity]) -> set[int]:
    """Indexes (into `entities`) of the day/time mentions the text rules out."""
    items = list(entities)
    polar = [(i, e) for i, e in enumerate(items) if e.type in POLAR_TYPES and 0 <= e.start < e.end]
    if not polar:
        return set()
    low = _NOT_A_NEGATION.sub(_blank, strip_accents(text.lower()))
    if len(low) != len(text):  # a character that decomposes differently: spans would not line up
        low = low[: len(text)].ljust(len(text))
    excluded: set[int] = set()
    for c_start, c_end in _clauses(low):
        mentions = [(i, e) for i, e in polar if c_start <= e.start and e.end <= c_end]
        if not mentions:
            continue
        cues: list[tuple[int, int, bool]] = []
        taken: list[tuple[int, int]] = []
        for pattern, postposed in ((_POSTPOSED, True), (_PREPOSED, False)):
            for m in pattern.finditer(low, c_start, c_end):
                if any(m.start() < e and s < m.end() for s, e in taken):
                    continue
                if any(m.start() < e.end and e.start < m.end() for _, e in mentions):
                    continue  # part of a mention ("no" inside a date phrase)
                taken.append((m.start(), m.end()))
                cues.append((m.start(), m.end(), postposed))
        for cue_start, cue_end, postposed in cues:
            before = [(i, e) for i, e in mentions if e.end <= cue_start and _gap(low, e.end, cue_start) <= _MAX_GAP_BEFORE]
            after = [(i, e) for i, e in mentions if e.start >= cue_end and _gap(low, cue_end, e.start) <= _MAX_GAP_AFTER]
            nearest_before = before[-1][0] if before else None
            nearest_after = after[0][0] if after else None
            first, second = (nearest_before, nearest_after) if postposed else (nearest_after, nearest_before)
            target = first if first is not None else second
            if target is not None:
                excluded.add(target)
    return excluded


def mark_ruled_out(text: str, entities: Iterable[Entity]) -> list[Entity]:
    """The entities, with ruled-out days and times renamed to `<type>_excluded`."""
    items = list(entities)
    excluded = ruled_out(text, items)
    return [replace(e, type=e.type + EXCLUDED_SUFFIX) if i in excluded else e for i, e in enumerate(items)]
