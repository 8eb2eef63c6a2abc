"""Choices offered with a message, on every channel: buttons, lists, or numbers to type.

A flow offers a choice as `Reply.buttons`: (label, payload) pairs, the payload
being what a tap sends back (`/btn:affirm:yes`, `/btn:choice:2`,
`/btn:reschedule:2026-11-28`; read by `intents.classifier`). Each channel shows
them its own way: Telegram as an inline keyboard, WhatsApp as quick-reply
buttons (up to `MAX_QUICK_REPLIES`) or a list picker (up to `MAX_LIST_ROWS`),
and SMS, which has neither, as a numbered sentence ("Reply 1 for Sat, 28 Nov,
2 for Mon, 30 Nov or 3 for Tue, 1 Dec.") whose typed numbers are read back to
the same payloads (`payload_for_number`).

Pure functions: nothing here reads the database or sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.core import replies

MAX_QUICK_REPLIES = 3  # WhatsApp session quick-reply buttons
MAX_LIST_ROWS = 10  # WhatsApp list picker rows
QUICK_REPLY_TITLE = 20  # characters WhatsApp shows on a button
LIST_ITEM_TITLE = 24  # characters of a list row's title
NUMBERED_CHANNELS = frozenset({"sms"})  # channels without buttons: the choices are numbered in the text
# Where a typed number is read as a pick of the choices just offered (WhatsApp too: a list may arrive as text).
NUMBER_READING_CHANNELS = frozenset({"sms", "whatsapp"})
_NUMBER = re.compile(r"^\s*#?\s*(\d{1,2})\s*[.)!]?\s*$")
_YES_NO = ("/btn:affirm", "/btn:deny")


def is_yes_no(payloads: Sequence[str]) -> bool:
    """A plain yes/no question: its text already says "reply YES or NO", so it needs no numbers."""
    return len(payloads) == 2 and all(p.startswith(prefix) for p, prefix in zip(payloads, _YES_NO, strict=True))


def numbered(text: str, labels: Sequence[str], locale: str | None) -> str:
    """`text` followed by the choices as numbers to reply with, in the customer's language."""
    if not labels:
        return text
    return f"{text} {replies.render('channels.reply_with_number', locale, labels=list(labels))}"


def with_choices(text: str, buttons: Sequence[tuple[str, str]], channel: str, locale: str | None) -> str:
    """The text as queued on `channel`: numbered choices where the channel has no buttons."""
    if channel not in NUMBERED_CHANNELS or not buttons or is_yes_no([p for _, p in buttons]):
        return text
    return numbered(text, [label for label, _ in buttons], locale)


def payload_for_number(text: str, payloads: Sequence[str]) -> str | None:
    """The payload a typed number picks ("2" -> the second choice), or None when `text` is not one of them."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    index = int(match.group(1))
    return payloads[index - 1] if 1 <= index <= len(payloads) else None


def clip(label: str, limit: int) -> str:
    """A label cut to what the provider shows (an ellipsis marks the cut)."""
    label = " ".join(label.split())
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "…"


def interactive_content_name(count: int) -> str | None:
    """The session Content template that shows `count` choices on WhatsApp: quick-reply buttons up to
    three, a list picker up to ten; None beyond (then the choices are numbered in the text)."""
    if 1 <= count <= MAX_QUICK_REPLIES:
        return f"doorstep_buttons_{count}"
    if count <= MAX_LIST_ROWS:
        return f"doorstep_list_{count}"
    return None

