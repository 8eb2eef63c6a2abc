"""GSM-7 (3GPP TS 23.038) for SMS text: a checker, a segment counter and the send-boundary clean-up.

An SMS whose text holds a single character outside the GSM-7 default alphabet
and its extension table is sent as UCS-2: 70 characters per segment instead of
160, so it costs about twice as much. Templates are written in GSM-7 (a test
renders them all); `sms_text` is the defence in depth applied to every SMS body
just before it is sent, for dynamic values such as product names, and it only
swaps typographic punctuation for its plain look-alike. It never drops letters,
so words in a language that needs UCS-2 (Spanish á, í, ó, ú) stay correct.

This module is pure: no I/O, no settings.
"""

from __future__ import annotations

import re

# The default alphabet, in code-point order 0x00-0x7F (0x1B is the escape to the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Reached through the escape character: each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SEPTETS_SINGLE, SEPTETS_PER_PART = 160, 153
UCS2_SINGLE, UCS2_PER_PART = 70, 67

# Typographic punctuation and spacing -> the GSM-7 character a reader expects in its place.
_PLAIN = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2026": "...", "\u2022": "-", "\u00b7": "-", "\u2044": "/",
    "\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u2002": " ", "\u2003": " ",
    "\u3000": " ", "\t": " ",
    # Invisible marks (zero-width space, word joiner, BOM, soft hyphen). The zero-width
    # joiners stay: they hold emoji and Indic letters together, which are UCS-2 anyway.
    "\u200b": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
}
# The rupee sign has no GSM-7 form; "Rs." is how Indian shops write it in plain text.
_RUPEE = re.compile("\u20b9\\s*")
_TABLE = str.maketrans(_PLAIN)


def non_gsm7(text: str) -> list[str]:
    """The distinct characters of `text` that force UCS-2, in order of appearance."""
    return list(dict.fromkeys(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION))


def is_gsm7(text: str) -> bool:
    return not non_gsm7(text)


def septets(text: str) -> int:
    """Length in GSM-7 septets (extension characters count twice); the text must be GSM-7."""
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def segments(text: str) -> int:
    """How many SMS parts `text` is billed as (GSM-7 if it fits, else UCS-2)."""
    if is_gsm7(text):
        size, single, per_part = septets(text), SEPTETS_SINGLE, SEPTETS_PER_PART
    else:
        size = len(text.encode("utf-16-le")) // 2  # UTF-16 code units: an emoji takes two
        single, per_part = UCS2_SINGLE, UCS2_PER_PART
    if size <= single:
        return 1
    return -(-size // per_part)


def sms_text(text: str) -> str:
    """`text` with typographic punctuation and odd spaces made plain, so it can stay GSM-7.

    Letters are never changed or removed: a text that needs UCS-2 for its words keeps them.
    """
    return _RUPEE.sub("Rs. ", text).translate(_TABLE)
