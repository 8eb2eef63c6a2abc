"""Problems told as statements: "it says delivered but i never got it", "you sent the wrong size".

A customer rarely says "I want to report a non-delivery"; they describe what
happened. The intent classifier reads "it says delivered but i never got it"
as WISMO, which on a delivered order would answer "delivered on Saturday, is
anything wrong?". This extractor names the problem (`problem` entity:
`not_received`, `wrong_item`, `damaged`) so the flows can act on it: a parcel
marked delivered that never arrived goes to a person at once, urgently. A
cancel reason given with the request (`cancel_reason`: found_cheaper,
ordered_by_mistake, no_longer_needed, too_late, changed_mind) travels with the
cancellation, so the customer is not asked for it again. A question about the
amount due (`amount_question`) and directions for the courier
(`delivery_instruction`, the customer's words) are named too.

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


# Why a customer cancels, when they say it with the request ("cancel it, I found it cheaper elsewhere").
_CANCEL_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("found_cheaper", re.compile(r"\b(cheaper|better price|lower price|less price|sasta|saste|mas barato|mejor precio)\b")),
    ("ordered_by_mistake", re.compile(r"\b(by mistake|mistake|accidentally|wrong order|galti se|por error|sin querer)\b")),
    ("no_longer_needed", re.compile(r"\b(don'?t need|do not need|no longer need|not needed|nahi chahiye|zarurat nahi|"
                                    r"ya no (?:lo|la) necesito|no (?:lo|la) necesito)\b")),
    ("too_late", re.compile(r"\b(too late|taking too long|too long|late delivery|bahut der|demasiado tarde|tarda mucho)\b")),
    ("changed_mind", re.compile(r"\b(changed my mind|change of mind|cambie de opinion|mind change|iraada badal)\b")),
)


# "wait, I pressed wrong, I DO want it": the customer takes back what they just said yes to.
_UNDO = re.compile(
    r"\b((?:pressed|clicked|tapped|hit) (?:the )?wrong|didn'?t mean (?:it|to|that)|did not mean (?:it|to|that)|"
    r"i do want it|i still want it|i want it after all|don'?t cancel|do not cancel|undo|take it back|"
    r"galat dab|galti se dab|cancel mat|cancel na karo|mujhe chahiye|me equivoque|sin querer|"
    r"no queria cancelar|no lo canceles|si lo quiero|lo quiero igual)\b"
)


# "kitna paisa dena hoga?", "how much do I have to pay?": the amount due on delivery.
_AMOUNT_QUESTION = re.compile(
    r"\b(how much (?:do i|should i|will i|shall i|to|i) (?:have to |need to |must )?pay|how much (?:is|will be) (?:the )?"
    r"(?:cod|cash|amount|total|payment)|amount to (?:pay|be paid)|what(?:'s| is) the (?:cod )?amount|"
    r"kitna (?:paisa|paise|amount|rupay|rupaye|rupees?|payment) (?:dena|dene|lagega|hoga|deni)|"
    r"kitne (?:paise|rupay|rupaye|rupees) (?:dene|lagenge|honge)|kitna dena (?:hai|hoga)|"
    r"cuanto (?:tengo que|hay que|debo|tendre que) pagar|cuanto (?:es|sera|sale) (?:el total|en total|el importe))"
)
# Directions for the courier: not an address change, a note that travels with the parcel.
_INSTRUCTION = re.compile(
    r"\b(gated (?:community|society|colony)|(?:gate|door|entry|access|building|lift) code|code (?:is )?\d{3,8}|"
    r"security (?:guard|desk|gate)|watchman|chowkidar|reception(?:ist)?|leave (?:it|the parcel|the package) "
    r"(?:at|with|outside|near|by|in)|ring the (?:door ?)?bell|don'?t ring|call me (?:when|before|on arrival|once)|"
    r"guard ke paas|gate pe (?:de|chhod)|darwaze pe|bell mat|"
    r"conserjer[ií]a|porter[ií]a|portero|c[oó]digo (?:de (?:acceso|la puerta|del portal)|del portal|de entrada)|"
    r"d[eé]jal[oa] (?:en|con)|no toqu(?:e|es) el timbre|ll[aá]mame (?:al llegar|antes))"
)


def extract_problems(text: str, context: Context) -> list[Entity]:
    low = strip_accents(text.lower())
    found: list[Entity] = []
    for value, pattern in _PATTERNS:
        m = pattern.search(low)
        if m:
            found.append(Entity("problem", value, text[m.start():m.end()], m.start(), m.end()))
            break
    amount = _AMOUNT_QUESTION.search(low)
    if amount:
        found.append(Entity("amount_question", True, text[amount.start():amount.end()], amount.start(), amount.end()))
    instruction = _INSTRUCTION.search(low)
    if instruction:
        found.append(Entity("delivery_instruction", text.strip()[:300], text.strip()[:300], 0, len(text)))
    undo = _UNDO.search(low)
    if undo:
        found.append(Entity("undo", True, text[undo.start():undo.end()], undo.start(), undo.end()))
    for value, pattern in _CANCEL_REASONS:
        m = pattern.search(low)
        if m:
            found.append(Entity("cancel_reason", value, text[m.start():m.end()], m.start(), m.end()))
            break
    return found
