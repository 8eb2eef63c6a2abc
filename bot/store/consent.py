"""The consent ledger: every opt-in and opt-out, with its source and time, and the customer's current state.

`set_consent` is the one way a customer's `opted_out_channels` changes: it updates the customer and appends a
`ConsentEvent` in the caller's transaction (an unchanged state appends nothing). `history` is the export
per customer. Row operations only; nothing here sends or commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.core.db import session_now
from bot.core.models import ConsentEvent, Customer

SOURCES = ("keyword", "button", "conversation", "provider", "api", "agent", "import")


def set_consent(session: Session, customer: Customer, channel: str, *, opted_out: bool, source: str,
                detail: str = "", now: datetime | None = None) -> bool:
    """Opt `customer` out of (or back into) `channel`; returns whether anything changed."""
    if source not in SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    current = set(customer.opted_out_channels)
    if (channel in current) == opted_out:
        return False
    customer.opted_out_channels = sorted(current | {channel} if opted_out else current - {channel})
    session.add(customer)
    session.add(ConsentEvent(customer_id=customer.id or 0, channel=channel, consent="out" if opted_out else "in",
                             source=source, detail=detail[:200], at=now or session_now(session)))
    return True


def history(session: Session, customer_id: int) -> list[dict[str, Any]]:
    """Every consent change of one customer, oldest first (the export)."""
    rows = session.exec(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)
                        .order_by(col(ConsentEvent.at), col(ConsentEvent.id))).all()
    return [{"channel": r.channel, "consent": r.consent, "source": r.source, "detail": r.detail,
             "at": r.at.isoformat()} for r in rows]
