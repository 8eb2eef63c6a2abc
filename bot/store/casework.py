"""Working one escalation in the inbox: internal notes and call outcomes, assignment and hand-over,
tags, priority, snooze, who else has it open, and the customer's history.

Runs in the caller's transaction and only writes rows; nothing here is ever sent to the customer.
Never logs a note's text, a phone number or a name.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from bot.core.db import try_insert
from bot.core.errors import Conflict, InvalidInput, NotFound
from bot.core.models import Customer, Escalation, EscalationNote, InboxPresence, Order
from bot.store.escalations import OPEN_STATUSES, locked_for_agent
from bot.store.orders import customer_orders, order_public
from bot.store.worklist import PRIORITIES

log = logging.getLogger(__name__)

MAX_NOTE = 2000
MAX_TAGS = 10
CALL_OUTCOMES = ("reached", "no_answer", "voicemail", "busy", "wrong_number", "call_back_later")
PRESENCE_SECONDS = 30  # an open conversation page polls every few seconds; older means gone
_TAG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,29}$")


def add_note(*, session: Session, escalation: Escalation, kind: str, author: str, body: str = "",
             outcome: str | None = None, now: datetime) -> EscalationNote:
    note = EscalationNote(escalation_id=escalation.id, customer_id=escalation.customer_id,  # type: ignore[arg-type]
                          kind=kind, author=author[:100], body=body[:MAX_NOTE], outcome=outcome, created_at=now)
    session.add(note)
    return note


def _escalation(session: Session, escalation_id: int) -> Escalation:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"escalation {escalation_id} not found")
    return escalation


def _text(value: str, field: str, *, required: bool = True) -> str:
    text = value.replace("\x00", "").strip()
    if required and not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > MAX_NOTE:
        raise InvalidInput(field, f"at most {MAX_NOTE} characters")
    return text


def internal_note(*, session: Session, escalation_id: int, agent: str, body: str, now: datetime) -> EscalationNote:
    """A note for colleagues, at any time (resolved escalations too)."""
    escalation = _escalation(session, escalation_id)
    return add_note(session=session, escalation=escalation, kind="note", author=agent,
                    body=_text(body, "note"), now=now)


def call_outcome(*, session: Session, escalation_id: int, agent: str, outcome: str, body: str,
                 now: datetime) -> EscalationNote:
    """The outcome of a phone call to the customer, with an optional note."""
    if outcome not in CALL_OUTCOMES:
        raise InvalidInput("outcome", f"one of {', '.join(CALL_OUTCOMES)}")
    escalation = _escalation(session, escalation_id)
    note = add_note(session=session, escalation=escalation, kind="call", author=agent, outcome=outcome,
                    body=_text(body, "note", required=False), now=now)
    escalation.updated_at = now
    session.add(escalation)
    log.info("call outcome recorded escalation=%s outcome=%s", escalation.id, outcome)
    return note


def notes(*, session: Session, escalation_id: int) -> list[EscalationNote]:
    return list(session.exec(select(EscalationNote).where(EscalationNote.escalation_id == escalation_id)
                             .order_by(col(EscalationNote.id))))


# ------------------------------------------------------------------ assignment


def reassign(*, session: Session, escalation_id: int, by: str, to: str | None, now: datetime) -> Escalation:
    """Give the escalation to `to` (another agent, or the one acting), or unassign it (`to` None): an
    unassigned escalation waits in "Unassigned" again and the bot stays quiet. The hand-over is noted."""
    escalation, conversation = locked_for_agent(session=session, escalation_id=escalation_id)
    before = escalation.assignee
    if to:
        to = " ".join(to.split())[:100]
        escalation.status = "assigned"
        escalation.assignee = to
        escalation.assigned_at = now
    else:
        escalation.status = "open"
        escalation.assignee = None
        escalation.assigned_at = None
    escalation.updated_at = now
    session.add(escalation)
    if before != escalation.assignee:
        body = f"{before or 'nobody'} -> {escalation.assignee or 'unassigned'}"
        add_note(session=session, escalation=escalation, kind="assign", author=by, body=body, now=now)
    return escalation


# ------------------------------------------------------------------ tags, priority, snooze


def set_labels(*, session: Session, escalation_id: int, agent: str, priority: str, tags: str,
               now: datetime) -> Escalation:
    """Priority and tags (comma- or space-separated words; lower-cased)."""
    if priority not in PRIORITIES:
        raise InvalidInput("priority", f"one of {', '.join(PRIORITIES)}")
    words = list(dict.fromkeys(w.lower().lstrip("#") for w in re.split(r"[,\s]+", tags) if w.strip("#")))
    bad = [w for w in words if not _TAG.match(w)]
    if bad:
        raise InvalidInput("tags", "letters, digits, - and _ only, at most 30 characters each")
    if len(words) > MAX_TAGS:
        raise InvalidInput("tags", f"at most {MAX_TAGS}")
    escalation = _escalation(session, escalation_id)
    escalation.priority = priority
    escalation.tags = words
    escalation.updated_at = now
    session.add(escalation)
    return escalation


def snooze(*, session: Session, escalation_id: int, agent: str, until: datetime | None, now: datetime) -> Escalation:
    """Hide an open escalation from the working views until `until` (None: wake it now). A customer
    message wakes it at once (`escalations.on_inbound_while_human`)."""
    escalation = _escalation(session, escalation_id)
    if escalation.status not in OPEN_STATUSES:
        raise Conflict(f"escalation {escalation_id} is resolved; there is nothing to snooze")
    if until is not None and not now < until <= now + timedelta(days=30):
        raise InvalidInput("until", "a time in the next 30 days")
    escalation.snoozed_until = until
    escalation.updated_at = now
    session.add(escalation)
    add_note(session=session, escalation=escalation, kind="snooze", author=agent,
             body=f"snoozed until {until.isoformat()}" if until else "woken up", now=now)
    return escalation


# ------------------------------------------------------------------ presence


def here(*, session: Session, escalation_id: int, agent: str, now: datetime) -> list[str]:
    """Record that `agent` has the escalation open; returns the other agents who have it open now."""
    _escalation(session, escalation_id)
    query = select(InboxPresence).where(InboxPresence.escalation_id == escalation_id, InboxPresence.agent == agent)
    row = session.exec(query).first()
    if row is None and not try_insert(session, InboxPresence(escalation_id=escalation_id, agent=agent, seen_at=now)):
        row = session.exec(query).first()  # another request of this agent was first
    if row is not None:
        row.seen_at = now
        session.add(row)
    return others_here(session=session, escalation_id=escalation_id, agent=agent, now=now)


def others_here(*, session: Session, escalation_id: int, agent: str, now: datetime) -> list[str]:
    since = now - timedelta(seconds=PRESENCE_SECONDS)
    return sorted(session.exec(select(InboxPresence.agent).where(
        InboxPresence.escalation_id == escalation_id, col(InboxPresence.agent) != agent,
        col(InboxPresence.seen_at) >= since)))


# ------------------------------------------------------------------ history


def customer_history(*, session: Session, escalation: Escalation) -> dict[str, Any]:
    """The customer's other escalations (newest first) and all their orders, for the side panel."""
    customer = session.get(Customer, escalation.customer_id)
    earlier = list(session.exec(
        select(Escalation, Order.order_id).outerjoin(Order, col(Order.id) == Escalation.order_pk)
        .where(Escalation.customer_id == escalation.customer_id, col(Escalation.id) != escalation.id)
        .order_by(col(Escalation.created_at).desc(), col(Escalation.id).desc()).limit(20)))
    orders = customer_orders(session=session, customer_id=escalation.customer_id) if customer else []
    return {
        "escalations": [{"id": e.id, "reason": e.reason, "status": e.status, "created_at": e.created_at,
                         "resolved_by": e.resolved_by, "order_id": order_id, "csat_score": e.csat_score}
                        for e, order_id in earlier],
        "orders": [order_public(o, customer).model_dump(mode="json") for o in orders] if customer else [],
    }
