"""Anger and complaint detection, so an upset customer reaches a person fast.

A small multilingual lexicon (English, Hinglish, Spanish) plus two signals
people use when they shout: long all-caps messages and repeated !!! / ???.
It is deliberately conservative: one mild word ("bad") is not anger; a
swear word, an accusation ("fraud", "chor", "estafa") or a legal threat is.
Never imports anything outside `intents/`.
"""

from __future__ import annotations

import re

# Words that on their own mean the customer is angry or filing a complaint.
_STRONG = re.compile(
    r"\b("
    # English
    r"worst|pathetic|disgusting|useless|horrible|terrible service|ridiculous|unacceptable|fraud|scam|scammers?|"
    r"cheat(?:ed|ers?|ing)?|liars?|lying|rip[- ]?off|furious|angry|fed up|sick of|complain(?:t|ing)?|"
    r"consumer (?:court|forum)|legal action|lawyer|sue you|report you|wtf|damn|shit|bloody|f+u+c+k\w*|"
    # Hinglish
    r"bakwas|bekar|ghatiya|chor|dhokha|dhokebaaz|fraudi|pagal bana|bewakoof|shikayat|gussa|"
    # Spanish
    r"p[eé]simo|p[eé]sima|estafa|estafadores?|enga[nñ]o|mentirosos?|queja|reclamaci[oó]n|verg[uü]enza|harto|harta|"
    r"denunciar|una mierda|fatal servicio"
    r")\b",
    re.IGNORECASE,
)
_SHOUT_MARKS = re.compile(r"[!?]{3,}")


def anger_score(text: str) -> float:
    """0.0 (calm) to 1.0 (clearly angry). Cheap: safe to call on every message."""
    if not text or not text.strip():
        return 0.0
    score = 0.0
    if _STRONG.search(text):
        score += 0.7
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.8:
        score += 0.4  # a whole sentence in capitals reads as shouting (alone it may just be caps lock)
    if _SHOUT_MARKS.search(text):
        score += 0.3
    return min(score, 1.0)


def is_angry(text: str, threshold: float = 0.7) -> bool:
    return anger_score(text) >= threshold
