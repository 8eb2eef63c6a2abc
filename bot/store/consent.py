"""The consent ledger: every opt-in and opt-out, with its source and time, and the customer's current state.

`set_consent` is the one way a customer's consent changes, on every channel: it updates the customer's
current state and appends a `ConsentEvent` in the caller's transaction (an unchanged state appends nothing).
The state lives in `Customer.opted_out_channels` for the messaging channels (sms, whatsapp, telegram, viber,
console) and in `Customer.email_status` for email, where an address can also be unusable (bounced) or
reported as spam (complained), not only unsubscribed. `history` is the export per customer, and
`forget_details` what erasure leaves of it. Row operations only; nothing here sends or commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.core.db import session_now
from bot.core.models import ConsentEvent, Customer

# Where a consent change came from. The general sources are the customer's own words (keyword, button,
# conversation), the provider refusing to deliver (provider: Twilio 21610), the shop (api, agent, import);
# the channel-specific ones name the provider event that carried it.
SOURCES = (
    "keyword", "button", "conversation", "provider", "api", "agent", "import",
    "email.unsubscribe",  # the unsubscribe link's button or a mail client's one-click (RFC 8058) POST
    "email.complaint",  # the customer reported an order email as spam (feedback loop)
    "email.bounce",  # a permanent (hard) bounce: the address does not exist
    "viber.subscribed", "viber.unsubscribed",  # Viber's subscribe / unsubscribe callbacks
    "telegram.blocked",  # Telegram answered 403: the user blocked the bot
    "telegram.start",  # /start in a chat that had been opted out (the user came back)
)
# email_status by source; a stronger status is never replaced by a weaker one (a complaint stays a complaint).
EMAIL_STATUS = {"email.complaint": "complained", "email.bounce": "bounced"}
EMAIL_RANK = {None: 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
ERASED_DETAIL = ""


def set_consent(session: Session, customer: Customer, channel: str, *, opted_out: bool, source: str,
                detail: str = "", now: datetime | None = None) -> bool:
    """Opt `customer` out of (or back into) `channel`; returns whether anything changed.

    For email, an opt-out from `email.complaint` or `email.bounce` marks the address complained or
    bounced (nothing more goes there), any other opt-out unsubscribed (records stop; replies to the
    customer's own emails still go); an opt-in makes the address deliverable again.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    if channel == "email":
        if not _set_email_status(customer, EMAIL_STATUS.get(source, "unsubscribed") if opted_out else None):
            return False
    else:
        current = set(customer.opted_out_channels)
        if (channel in current) == opted_out:
            return False
        customer.opted_out_channels = sorted(current | {channel} if opted_out else current - {channel})
    session.add(customer)
    session.add(ConsentEvent(customer_id=customer.id or 0, channel=channel, consent="out" if opted_out else "in",
                             source=source, detail=detail[:200], at=now or session_now(session)))
    return True


def opted_out(customer: Customer, channel: str) -> bool:
    """Whether the customer is opted out of `channel` now (email: unsubscribed, bounced or complained)."""
    if channel == "email":
        return customer.email_status is not None
    return channel in customer.opted_out_channels


def _set_email_status(customer: Customer, status: str | None) -> bool:
    current = customer.email_status
    if status is not None and EMAIL_RANK.get(status, 0) <= EMAIL_RANK.get(current, 0):
        return False  # already as strong or stronger: unsubscribed after a complaint changes nothing
    if status is None and current is None:
        return False
    customer.email_status = status
    return True


def history(session: Session, customer_id: int) -> list[dict[str, Any]]:
    """Every consent change of one customer, oldest first (the export)."""
    rows = session.exec(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)
                        .order_by(col(ConsentEvent.at), col(ConsentEvent.id))).all()
    return [{"channel": r.channel, "consent": r.consent, "source": r.source, "detail": r.detail,
             "at": r.at.isoformat()} for r in rows]


def forget_details(session: Session, customer_id: int) -> None:
    """Erasure: keep each change's channel, direction, source and time (what the shop must be able to show
    for an opt-out, and what keeps an opted-out number opted out), blank the free-text detail (the words
    the customer sent, a provider's error text)."""
    for row in session.exec(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)):
        if row.detail != ERASED_DETAIL:
            row.detail = ERASED_DETAIL
            session.add(row)
