"""Quick replies for the inbox, per locale, with variables; and the approved WhatsApp templates an agent
may send once the 24-hour window is closed.

Quick replies come from three places, later ones replacing earlier ones with the same label:
`data/quick_replies.yml` (the defaults), `inbox.quick_replies` in doorstep.yaml, and the ones managed
in the inbox (table `quick_reply`). `{{name}}`, `{{order_id}}` and `{{delivery_date}}` are filled in
for the conversation by plain substitution: an agent's text is never evaluated as a template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, col, select

from bot.core import replies
from bot.core.db import try_insert
from bot.core.errors import Conflict, InvalidInput, NotFound
from bot.core.models import Customer, Order, QuickReply

log = logging.getLogger(__name__)

DEFAULTS_FILE = replies.DATA_DIR / "quick_replies.yml"
VARIABLES = ("name", "order_id", "delivery_date")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
MAX_LABEL = 60
MAX_TEXT = 1000


@dataclass(frozen=True)
class Canned:
    label: str
    text: str
    source: str  # "default" | "doorstep.yaml" | "inbox"
    id: int | None = None  # the row, for the ones managed in the inbox


def placeholders(text: str) -> list[str]:
    """The variables a text uses, in order of appearance (WhatsApp template parameters 1, 2, …)."""
    return _PLACEHOLDER.findall(text)


def check_text(text: str) -> str:
    text = text.replace("\x00", "").strip()
    if not text:
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput("text", f"at most {MAX_TEXT} characters")
    unknown = sorted(set(placeholders(text)) - set(VARIABLES))
    if unknown:
        raise InvalidInput("text", f"unknown variable {{{{{unknown[0]}}}}} (known: "
                                   + ", ".join(f"{{{{{v}}}}}" for v in VARIABLES) + ")")
    return text


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each known `{{variable}}` replaced by its value (unknown ones left as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def conversation_values(*, customer: Customer | None, order: Order | None, locale: str, today: date) -> dict[str, str]:
    """The variables' values for one conversation, worded for the customer's language."""
    day = (order.delivery_date or order.eta or order.promised_date) if order is not None else None
    return {
        "name": (customer.name.split(" ")[0] if customer is not None and customer.name else ""),
        "order_id": order.order_id if order is not None else "",
        "delivery_date": replies.format_day(day, locale, today) if day else "",
    }


def _entries(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        return []
    return [{"label": str(q["label"])[:MAX_LABEL], "text": str(q["text"])} for q in raw
            if isinstance(q, dict) and q.get("label") and q.get("text")]


def by_locale(raw: Any) -> dict[str, list[dict[str, str]]]:
    """A list (English) or a mapping locale -> list of {label, text}."""
    if isinstance(raw, list):
        return {"en": _entries(raw)}
    if isinstance(raw, dict):
        return {replies.normalise_locale(str(locale)): _entries(items) for locale, items in raw.items()}
    return {}


@lru_cache(maxsize=4)
def _defaults(path: Path) -> dict[str, list[dict[str, str]]]:
    try:
        return by_locale(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        log.warning("quick replies unreadable: %s", path.name)  # a broken file = none, never a 500
        return {}


def for_locale(*, session: Session, shop_config: Mapping[str, Any], locale: str) -> list[Canned]:
    """The quick replies in `locale` (English when that locale has none)."""
    loc = replies.normalise_locale(locale)
    configured = by_locale((shop_config.get("inbox") or {}).get("quick_replies"))
    stored = list(session.exec(select(QuickReply).order_by(col(QuickReply.position), col(QuickReply.id))))

    def gather(wanted: str) -> list[Canned]:
        merged: dict[str, Canned] = {}
        for item in _defaults(DEFAULTS_FILE).get(wanted, []):
            merged[item["label"]] = Canned(item["label"], item["text"], "default")
        for item in configured.get(wanted, []):
            merged[item["label"]] = Canned(item["label"], item["text"], "doorstep.yaml")
        for row in stored:
            if row.locale == wanted:
                merged[row.label] = Canned(row.label, row.text, "inbox", row.id)
        return list(merged.values())

    return gather(loc) or gather(replies.DEFAULT_LOCALE)


def all_managed(session: Session) -> list[QuickReply]:
    return list(session.exec(select(QuickReply).order_by(col(QuickReply.locale), col(QuickReply.position),
                                                         col(QuickReply.id))))


def save(*, session: Session, locale: str, label: str, text: str, agent: str, now: datetime,
         reply_id: int | None = None) -> QuickReply:
    """Add a quick reply (or change one managed in the inbox). A label is unique per locale."""
    loc = replies.normalise_locale(locale.strip())
    if loc not in replies.BABEL_LOCALES:
        raise InvalidInput("locale", f"one of {', '.join(replies.BABEL_LOCALES)}")
    label = " ".join(label.split())
    if not label or len(label) > MAX_LABEL:
        raise InvalidInput("label", f"1-{MAX_LABEL} characters")
    text = check_text(text)
    if reply_id is not None:
        row = session.get(QuickReply, reply_id)
        if row is None:
            raise NotFound(f"quick reply {reply_id} not found")
        clash = session.exec(select(QuickReply.id).where(QuickReply.locale == loc, QuickReply.label == label,
                                                         col(QuickReply.id) != reply_id)).first()
        if clash is not None:
            raise Conflict(f"a quick reply labelled {label!r} exists for {loc}")
        row.locale, row.label, row.text, row.updated_by, row.updated_at = loc, label, text, agent[:100], now
        session.add(row)
        return row
    row = QuickReply(locale=loc, label=label, text=text, updated_by=agent[:100], created_at=now, updated_at=now,
                     position=len(all_managed(session)))
    if not try_insert(session, row):
        raise Conflict(f"a quick reply labelled {label!r} exists for {loc}")
    return row


def delete(*, session: Session, reply_id: int) -> None:
    row = session.get(QuickReply, reply_id)
    if row is None:
        raise NotFound(f"quick reply {reply_id} not found")
    session.delete(row)


# ------------------------------------------------------------------ WhatsApp templates


@dataclass(frozen=True)
class WhatsAppTemplate:
    kind: str  # the message kind TWILIO_WHATSAPP_TEMPLATES maps to its approved Content SID
    label: str
    text: str  # with {{variables}}; they are the Content template's {{1}}, {{2}}, … in this order


def whatsapp_templates(shop_config: Mapping[str, Any], approved: Mapping[str, str]) -> list[WhatsAppTemplate]:
    """The templates an agent may pick when the window is closed: in doorstep.yaml `inbox.whatsapp_templates`
    and approved (a Content SID for their kind in TWILIO_WHATSAPP_TEMPLATES)."""
    found = []
    for item in (shop_config.get("inbox") or {}).get("whatsapp_templates") or []:
        if isinstance(item, dict) and item.get("kind") in approved and item.get("text"):
            found.append(WhatsAppTemplate(str(item["kind"]), str(item.get("label") or item["kind"]), str(item["text"])))
    return found


def template_message(template: WhatsAppTemplate, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The text the transcript shows and the Content variables (`{"1": …, "2": …}`) Twilio fills in."""
    names = placeholders(template.text)
    return fill(template.text, values), {str(i): values.get(name, "") or "-" for i, name in enumerate(names, 1)}
