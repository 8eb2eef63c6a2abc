"""Automatic messages held while a person owns the conversation.

While a conversation is `waiting_human` or `human`, the dispatcher does not
send that customer automatic messages (journeys, reminders, proactive
questions: anything queued above reply priority). It moves them to `held`
instead, with the reason, and the agent sees them in the inbox thread, where
one click sends one now (`send_held`). Replies — the agent's own and the bot's
one acknowledgement — are never held.

When the conversation goes back to the bot (`release_held`, called by
`escalations.resolve`), the held messages still relevant are queued again in
their original order; the obsolete ones are closed instead: `expired` past
their validity, `cancelled` when a later status of the same order superseded
them (the journeys' own supersession table).

Everything runs inside the caller's transaction and only writes rows; nothing
here sends anything or logs message text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from bot.core.db import one_of
from bot.core.errors import MessageObsolete, NotFound, NotHeld
from bot.core.models import Conversation, Escalation, Message, OrderEvent, Outbox
from bot.core.vocab import HUMAN_OWNERS, SUPERSEDES
from bot.store.outbox import PRIORITY_REPLY, set_status

log = logging.getLogger(__name__)

HELD = "held"
HOLD_REASON = "held: a person is handling this conversation"


@dataclass(frozen=True)
class Released:
    """What handing a conversation back did with its held messages."""

    queued: int = 0
    expired: int = 0
    cancelled: int = 0
    # (order pk, flow) of each queued message that asks a question: its flow must be opened again.
    flows: list[tuple[int, str]] = field(default_factory=list)


def is_automatic(row: Outbox) -> bool:
    """A message the bot sends on its own (not a reply), and not already released by an agent."""
    return row.kind == "message" and row.priority > PRIORITY_REPLY and not row.payload.get("released_by")


def human_owns(session: Session, customer_id: int | None) -> bool:
    if customer_id is None:
        return False
    owner = session.exec(select(Conversation.owner).where(Conversation.customer_id == customer_id)).first()
    return owner in HUMAN_OWNERS


def human_owned(session: Session, customer_ids: set[int]) -> set[int]:
    """Which of these customers' conversations a person owns (`human_owns` for a whole batch, one query)."""
    if not customer_ids:
        return set()
    return {customer_id for customer_id, owner in session.exec(
        select(Conversation.customer_id, Conversation.owner).where(one_of(session, col(Conversation.customer_id),
                                                                          customer_ids)))
        if owner in HUMAN_OWNERS}


def hold(session: Session, row: Outbox, message: Message | None, now: datetime) -> None:
    set_status(session, row, message, HELD, reason=HOLD_REASON, now=now)


def _requeue(session: Session, row: Outbox, message: Message | None, now: datetime, *, released_by: str) -> None:
    row.status = "pending"
    row.due_at = now
    row.last_error = None
    row.updated_at = now
    # Marked, so the dispatcher does not hold it again (an agent's one-click send happens while they own it).
    row.payload = {**row.payload, "released_by": released_by}
    session.add(row)
    if message is not None:
        message.status = "queued"
        message.error = None
        session.add(message)


def superseded_by(session: Session, row: Outbox, message: Message | None) -> str | None:
    """The later order status that made this journey message obsolete, if any."""

    journey = row.payload.get("journey")
    if not journey or row.order_pk is None:
        return None
    since = message.created_at if message is not None else row.created_at
    later = session.exec(select(OrderEvent.type, OrderEvent.created_at).where(
        OrderEvent.order_pk == row.order_pk, col(OrderEvent.created_at) >= since,
    ).order_by(col(OrderEvent.id))).all()
    for kind, at in later:
        # The event that queued this message carries its own type and time: only a strictly later
        # one of the same type (a repeat) counts; another type at the same instant does.
        if journey in SUPERSEDES.get(kind, ()) and (kind != journey or at > since):
            return str(kind)
    return None


def obsolete_reason(session: Session, row: Outbox, message: Message | None, now: datetime) -> tuple[str, str] | None:
    """(status, reason) when a held message must not go out any more, else None."""
    if row.expires_at is not None and row.expires_at <= now:
        return "expired", "obsolete: its validity ended while a person handled the conversation"
    kind = superseded_by(session, row, message)
    if kind is not None:
        return "cancelled", f"obsolete: superseded by {kind} while a person handled the conversation"
    return None


def held_rows(session: Session, customer_id: int) -> list[tuple[Outbox, Message | None]]:
    rows = session.exec(select(Outbox).where(
        Outbox.customer_id == customer_id, Outbox.kind == "message", Outbox.status == HELD,
    ).order_by(col(Outbox.first_due_at), col(Outbox.id))).all()
    return [(row, session.get(Message, row.message_id) if row.message_id else None) for row in rows]


def release_held(*, session: Session, customer_id: int, now: datetime, released_by: str = "handback") -> Released:
    """The bot owns the conversation again: queue what is still relevant, close the obsolete."""
    queued = expired = cancelled = 0
    flows: list[tuple[int, str]] = []
    for row, message in held_rows(session, customer_id):
        verdict = obsolete_reason(session, row, message, now)
        if verdict is None:
            _requeue(session, row, message, now, released_by=released_by)
            queued += 1
            if row.payload.get("opens_flow") and row.order_pk is not None:
                flows.append((row.order_pk, str(row.payload["opens_flow"])))
            continue
        status, reason = verdict
        set_status(session, row, message, status, reason=reason, now=now, code="obsolete")
        if status == "expired":
            expired += 1
        else:
            cancelled += 1
    if queued or expired or cancelled:
        log.info("held messages released customer=%s queued=%s expired=%s cancelled=%s",
                 customer_id, queued, expired, cancelled)
    return Released(queued, expired, cancelled, flows)


def send_held(*, session: Session, escalation_id: int, message_id: int, agent: str, now: datetime) -> Message:
    """An agent sends one held message now, while they still own the conversation."""
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"escalation {escalation_id} not found")
    message = session.get(Message, message_id)
    row = session.exec(select(Outbox).where(Outbox.message_id == message_id)).first()
    if message is None or row is None or message.customer_id != escalation.customer_id:
        raise NotFound(f"message {message_id} not found in escalation {escalation_id}")
    if row.status != HELD:
        raise NotHeld(f"message {message_id} is not held (it is {message.status})")
    verdict = obsolete_reason(session, row, message, now)
    if verdict is not None:
        raise MessageObsolete(f"message {message_id} is obsolete and was not sent ({verdict[1]})")
    _requeue(session, row, message, now, released_by=f"agent:{agent}"[:100])
    log.info("held message released by an agent escalation=%s message=%s", escalation_id, message_id)
    return message
