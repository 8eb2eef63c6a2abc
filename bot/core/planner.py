"""The send planner: for one outbound message, which channel and which form, what it costs, and why.

Decides from what the caller knows when the message is queued: the customer's channels and opt-outs, the
WhatsApp 24-hour window, whether an approved template exists outside it and the category WhatsApp gives
that template now (a utility template re-filed as marketing is priced and gated as marketing), the
message's own category (replies and order updates are utility, feedback and reorder nudges marketing),
the price per message by country and category (`messaging.pricing` in doorstep.yaml), quiet hours and the
per-recipient gap (`messaging.planner`). The result carries its reason in plain words; it is stored on
the message (`Message.plan`) for the message log and the inbox.

Forms: `session` (free-form text or buttons inside the WhatsApp window, or any SMS / Telegram / console
message), `template` (an approved WhatsApp template outside the window). Pure: no database, no clock, no
provider; the caller passes everything in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

FREE_CHANNELS = frozenset({"telegram", "console"})
MARKETING = "marketing"
UTILITY = "utility"


@dataclass(frozen=True)
class Recipient:
    country: str | None
    has_phone: bool
    telegram: bool
    whatsapp: bool  # prefers WhatsApp (a phone alone does not mean the customer uses it)
    opted_out: frozenset[str]
    preferred: str


@dataclass(frozen=True)
class Situation:
    channel: str  # the channel asked for (the conversation's, or the journey's)
    category: str  # utility | marketing
    reply: bool  # an answer to a customer who just wrote
    whatsapp_window_open: bool
    template_category: str | None  # WhatsApp's current category of the template usable outside the window
    template: str | None = None  # which template that is, for the reason ("template doorstep_shipped_en")
    no_template: str | None = None  # why there is none (e.g. "doorstep_shipped_en: pending"), for the reason
    quiet_until: datetime | None = None  # quiet hours: the message waits until then
    paced_until: datetime | None = None  # per-recipient gap: the message waits until then


@dataclass(frozen=True)
class Plan:
    channel: str
    form: str  # session | template
    category: str
    price: float
    currency: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "price": round(self.price, 5)}


def price(pricing: Mapping[str, Any], channel: str, form: str, category: str, country: str | None) -> float:
    """What one message costs: WhatsApp = the provider's fee, plus Meta's per-message rate for a template
    (by the recipient's country and the category); SMS by country; Telegram and the console nothing; any
    other channel (email, Viber) its flat `pricing.<channel>` when given, else nothing."""
    if channel in FREE_CHANNELS:
        return 0.0
    if channel not in {"whatsapp", "sms"}:
        flat = pricing.get(channel, 0.0)
        return float(flat) if isinstance(flat, int | float) else 0.0
    if channel == "whatsapp":
        fee = float(pricing.get("whatsapp_fee", 0.0))
        if form != "template":
            return fee  # service messages (and utility templates inside the window) carry no Meta charge
        table = pricing.get("whatsapp") or {}
        rates = table.get(country or "") or table.get("*") or {}
        return fee + float(rates.get(category, rates.get(MARKETING, 0.0)))
    table = pricing.get("sms") or {}
    return float(table.get(country or "", table.get("*", 0.0)))


def _available(recipient: Recipient, channel: str) -> bool:
    """Whether a message may go to the customer on `channel` (an address there, and no opt-out)."""
    if channel in recipient.opted_out:
        return False
    if channel == "whatsapp":
        return recipient.has_phone and recipient.whatsapp
    if channel == "sms":
        return recipient.has_phone
    return recipient.telegram if channel == "telegram" else channel == "console"


def plan(recipient: Recipient, situation: Situation, pricing: Mapping[str, Any],
         max_price: float | None = None) -> Plan:
    """Channel, form, price and the reason, for one message."""
    currency = str(pricing.get("currency", "USD"))
    category = MARKETING if situation.category == MARKETING else UTILITY
    notes: list[str] = []

    def done(channel: str, form: str, why: str, category: str = category) -> Plan:
        cost = price(pricing, channel, form, category, recipient.country)
        if situation.quiet_until is not None:
            notes.append(f"quiet hours: waits until {situation.quiet_until:%H:%M}")
        if situation.paced_until is not None:
            notes.append(f"paced: one message at a time to this customer, waits until {situation.paced_until:%H:%M}")
        text = "; ".join([why, *notes])
        return Plan(channel, form, category, cost, currency, f"{text} ({cost:.4f} {currency})")

    channel = situation.channel
    if situation.reply and channel == "whatsapp" and situation.whatsapp_window_open:
        return done(channel, "session", "reply inside the WhatsApp 24-hour window")
    if situation.reply and channel != "whatsapp":
        return done(channel, "session", f"reply on {channel}, where the customer wrote")
    # Proactive, or a late (agent's) reply on WhatsApp after the window closed: as below.
    if channel in recipient.opted_out:
        # An opt-out is never worked around by writing on another channel: the dispatcher cancels it.
        return done(channel, "none", f"opted out of {channel}: not sent")
    if channel != "whatsapp":
        return done(channel, "session", f"{channel}, the customer's channel")
    if situation.whatsapp_window_open:
        return done("whatsapp", "session", "inside the WhatsApp 24-hour window: a session message, no template fee")
    if situation.template_category is None:
        missing = f" ({situation.no_template})" if situation.no_template else ""
        fallback = "sms" if _available(recipient, "sms") else None
        if fallback is None:
            return done("whatsapp", "none", f"outside the WhatsApp window, no approved template{missing} and no SMS")
        return done(fallback, "session", f"outside the WhatsApp window and no approved template{missing}: SMS instead")
    charged = MARKETING if situation.template_category == MARKETING else category
    why = "outside the WhatsApp 24-hour window: approved " + (situation.template or "template")
    if charged != category:
        why += f" (WhatsApp files it as {charged}, so it is priced as {charged})"
    template_cost = price(pricing, "whatsapp", "template", charged, recipient.country)
    if max_price is not None and template_cost > max_price and _available(recipient, "sms"):
        sms_cost = price(pricing, "sms", "session", category, recipient.country)
        if sms_cost < template_cost:
            return done("sms", "session", f"a WhatsApp template would cost {template_cost:.4f}, over the "
                                          f"{max_price:.4f} limit: SMS instead")
    return done("whatsapp", "template", why, charged)
