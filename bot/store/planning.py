"""Gathers what the send planner (bot.core.planner) needs for one message being queued, and applies its plan.

Called by `outbox.enqueue_message` in the caller's transaction. A reply needs no query (the customer just
wrote, so their WhatsApp window is open); a proactive WhatsApp message reads the window and the synced
templates' categories (two small queries); the per-recipient gap, when configured, one more. The shop's
`messaging` settings come from the session (`Database.planning`, set by the service), so every caller of
`enqueue_message` plans the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, col, func, select

from bot.core import planner, replies, whatsapp_templates
from bot.core.models import Customer, Message
from bot.core.phones import country_of
from bot.core.shopconfig import DEFAULTS, parse_duration, parse_quiet_hours
from bot.store import content

MARKETING_PRIORITY = 50  # bot.store.outbox.PRIORITY_MARKETING (not imported: outbox imports this module)


@dataclass(frozen=True)
class Planned:
    plan: planner.Plan
    due_at: datetime | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Settings:
    messaging: dict[str, Any]
    quiet_hours: str
    timezone: str
    whatsapp_templates: frozenset[str]  # message kinds TWILIO_WHATSAPP_TEMPLATES maps to an approved SID ("*": all)


def _settings(session: Session) -> _Settings:
    info = session.info.get("planning") or {}
    shop = info.get("shop") or DEFAULTS
    return _Settings(messaging=dict(shop.get("messaging") or DEFAULTS["messaging"]),
                     quiet_hours=str(info.get("quiet_hours", shop.get("contact_policy", {}).get("quiet_hours", ""))),
                     timezone=str(info.get("timezone") or "UTC"),
                     whatsapp_templates=frozenset(info.get("whatsapp_templates") or ()))


def _aware(value: Any) -> datetime | None:
    """A timestamp from `func.max` (which bypasses the UTCDateTime type on SQLite) as aware UTC."""
    if value is None:
        return None
    found: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return found if found.tzinfo else found.replace(tzinfo=UTC)


# WhatsApp allows free-form messages this long after the customer's last message.
WHATSAPP_WINDOW = timedelta(hours=24)


def whatsapp_window_open(session: Session, customer_id: int | None, now: datetime) -> bool:
    """Whether the customer wrote on WhatsApp in the last 24 hours (free-form messages allowed)."""
    if customer_id is None:
        return False
    last = session.exec(select(func.max(Message.created_at)).where(
        Message.customer_id == customer_id, Message.direction == "in", Message.channel == "whatsapp")).first()
    if last is None:
        return False
    last_at = _aware(last)
    return last_at is not None and now - last_at < WHATSAPP_WINDOW




def plan_message(session: Session, *, customer: Customer, channel: str, template: str | None, priority: int,
                 reply: bool, due_at: datetime | None, now: datetime, agent: bool = False,
                 values: Mapping[str, Any] | None = None) -> Planned:
    """The plan of one message, its (possibly later) due time, and payload additions (DLT id, the WhatsApp
    template and its variables). `values`: the named values of the message kind's WhatsApp template
    (data/whatsapp_templates.yml), when the caller has them."""
    found = _settings(session)
    messaging = found.messaging

    category = planner.MARKETING if priority >= MARKETING_PRIORITY else planner.UTILITY
    uses_whatsapp = customer.channel == "whatsapp"
    # The bot answers a customer who just wrote (window open, no query); an agent may answer days later.
    window = (reply and not agent) or (channel == "whatsapp" and whatsapp_window_open(session, customer.id, now))
    payload: dict[str, Any] = {}
    pick = _NO_PICK
    if (channel == "whatsapp" or (uses_whatsapp and not reply)) and not (window and reply):
        # Outside the window a template; a proactive message inside it gets its template ready too, in case
        # the window has closed by the time it is sent (quiet hours, pacing).
        pick = _whatsapp_template(session, found, template, customer.locale, category, values)
        if pick.name:
            payload["whatsapp_template"] = pick.name  # the sender sends this one (its category may have changed)
        if pick.variables is not None:
            payload["template_vars"] = pick.variables
    quiet_until = paced_until = None
    when = due_at or now
    if not reply:
        quiet_until = _quiet_end(found.quiet_hours, customer.timezone or found.timezone, when) \
            if due_at and due_at > now else None
        gap = parse_duration(str(messaging.get("planner", {}).get("min_gap_per_recipient", "0m")))
        if gap > timedelta(0):
            last = session.exec(select(func.max(Message.due_at)).where(
                Message.customer_id == customer.id, Message.direction == "out",
                col(Message.status).in_(("scheduled", "queued", "sent", "delivered", "read")))).first()
            last_at = _aware(last)
            if last_at is not None and last_at + gap > when:
                paced_until = when = last_at + gap
    recipient = planner.Recipient(country=country_of(customer.phone), has_phone=bool(customer.phone),
                                  telegram=bool(customer.telegram_chat_id), whatsapp=uses_whatsapp,
                                  opted_out=frozenset(customer.opted_out_channels), preferred=customer.channel)
    situation = planner.Situation(channel=channel, category=category, reply=reply, whatsapp_window_open=window,
                                  template_category=None if window else pick.category, template=pick.label,
                                  no_template=pick.missing, quiet_until=quiet_until,
                                  paced_until=paced_until)
    limit = messaging.get("planner", {}).get("max_price_per_message")
    plan = planner.plan(recipient, situation, messaging.get("pricing") or {},
                        float(limit) if limit is not None else None)
    if plan.channel == "sms" and recipient.country == "IN":
        dlt = messaging.get("india_dlt") or {}
        ids = dlt.get("templates") or {}
        template_id = ids.get(template or "") or ids.get("*")
        if template_id:
            payload["dlt_template_id"] = str(template_id)
        elif dlt.get("required"):
            plan = replace(plan, reason=plan.reason + "; no DLT template id for this text (messaging.india_dlt)")
    return Planned(plan=plan, due_at=when if paced_until is not None else due_at, payload=payload)


@dataclass(frozen=True)
class _Pick:
    name: str | None = None  # the synced Content template (None: TWILIO_WHATSAPP_TEMPLATES' SID, or none)
    category: str | None = None  # utility | marketing as WhatsApp files it now; None: no template usable
    label: str | None = None  # for the plan's reason
    missing: str | None = None  # why there is none, for the plan's reason
    variables: dict[str, str] | None = None  # ContentVariables


_NO_PICK = _Pick()


def _whatsapp_template(session: Session, found: _Settings, kind: str | None, locale: str | None, category: str,
                       values: Mapping[str, Any] | None) -> _Pick:
    """The template a WhatsApp message of `kind` goes as outside the window: the operator's own SID for the
    kind (TWILIO_WHATSAPP_TEMPLATES), else the journey's approved template in the customer's locale, else in
    the shop's default locale, else the operator's `*` SID; with the variables filled from `values`. Never
    the whole text in one variable: a kind without a template of its own has none."""
    definition = whatsapp_templates.for_kind(kind)
    wanted = replies.normalise_locale(locale)
    wanted = wanted if wanted in whatsapp_templates.LOCALES else whatsapp_templates.DEFAULT_LOCALE
    filled = definition.positional(values, wanted) if definition is not None and values is not None else None
    if kind and kind in found.whatsapp_templates:
        return _Pick(category=category, label=f"template for {kind} (TWILIO_WHATSAPP_TEMPLATES)", variables=filled)
    missing: list[str] = []
    if definition is not None and values is not None:
        synced = content.states(session)
        for each in dict.fromkeys((wanted, whatsapp_templates.DEFAULT_LOCALE)):
            name = definition.content_name(each)
            state = synced.get(name)
            if state is not None and state.usable:
                label = f"template {name}" + (f" ({'; '.join(missing)})" if missing else "")
                return _Pick(name, state.category or definition.category.lower(), label,
                             variables=definition.positional(values, each))
            missing.append(f"{name}: {state.approval_status if state else 'not synced'}")
    elif definition is not None:
        missing.append(f"{kind}: no values for its template's variables")
    else:
        missing.append(f"no WhatsApp template for {kind or 'this message'}")
    if "*" in found.whatsapp_templates:
        return _Pick(category=category, label="template * (TWILIO_WHATSAPP_TEMPLATES)", variables=filled)
    return _Pick(missing="; ".join(missing))


def _quiet_end(quiet_hours: str, zone: str, due_at: datetime) -> datetime | None:
    """`due_at` when it is the end of the quiet hours (the journeys moved the message there), else None."""
    try:
        quiet = parse_quiet_hours(quiet_hours)
        local = due_at.astimezone(ZoneInfo(zone))
    except (ValueError, ZoneInfoNotFoundError):
        return None
    if quiet is None:
        return None
    return local if (local.hour, local.minute) == (quiet.end.hour, quiet.end.minute) else None  # shown in local time
