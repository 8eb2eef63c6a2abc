"""Problems told as statements: "it says delivered but i never got it", "you sent the wrong size".

A customer rarely says "I want to report a non-delivery"; they describe what
happened. The intent classifier reads "it says delivered but i never got it"
as WISMO, which on a delivered order would answer "delivered on Saturday, is
anything wrong?". This extractor names the problem (`problem` entity:
`not_received`, `wrong_item`, `damaged`) so the flows can act on it: a parcel
marked delivered that never arrived goes to a person at once, urgently.

Pure standard library; runs on every message.
"""

from __future__ import annotations

import re

from intents.text import strip_accents
from intents.types import Context, Entity

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("not_received", re.compile(
        r"\b(never (?:got|received|came|arrived)|(?:did ?n[o']?t|didnt|have ?n[o']?t|havent|not|still not|never) "
        r"(?:get|got|receive|received|recieve|recieved|come|arrive|arrived)\b(?! (?:a|any|the) (?:message|sms|msg|update|call))|"
        r"not (?:been )?(?:received|delivered to me)|no one (?:delivered|came)|nobody (?:delivered|came)|"
        r"(?:says|shows|marked|showing|status is) (?:as )?delivered but|delivered but (?:i |we )?(?:never|didn|did not|have not|havent|no)|"
        r"nahi mila|nahin mila|nhi mila|nahi aaya|nahi aya|nhi aaya|mila hi nahi|aaya hi nahi|"
        r"no (?:me |nos )?(?:ha|han) llegado|no lo he recibido|no la he recibido|no he recibido|nunca (?:me )?(?:llego|lleg[oó])|"
        r"no (?:me )?lleg[oó])"
    )),
    ("wrong_item", re.compile(
        r"\b(wrong (?:size|item|product|colou?r|order|one|thing)|(?:sent|received|got) (?:me )?(?:the )?wrong|"
        r"not what i ordered|galat (?:size|item|product|saman|samaan)|"
        r"talla (?:equivocada|incorrecta)|producto (?:equivocado|incorrecto)|no es lo que ped[ií])"
    )),
    ("damaged", re.compile(
        r"\b(damaged|broken|cracked|torn|leaking|arrived (?:broken|damaged|empty)|box (?:was |is )?empty|"
        r"toota|tuta|phata|kharab|roto|rota|da[nñ]ado|da[nñ]ada)\b"
    )),
)


def extract_problems(text: str, context: Context) -> list[Entity]:
    low = strip_accents(text.lower())
    for value, pattern in _PATTERNS:
        m = pattern.search(low)
        if m:
            return [Entity("problem", value, text[m.start():m.end()], m.start(), m.end())]
    return []
