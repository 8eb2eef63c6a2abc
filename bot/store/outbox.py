"""Writing side effects into the outbox, inside the caller's transaction.

Nothing here sends anything: the dispatcher does, after commit. That is what
makes "nothing sent that was not committed, nothing committed lost" hold.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.core import choices
from bot.core.db import one_of, session_now, try_insert
from bot.core.models import Customer, JourneyTimer, LogisticsEvent, Message, Order, Outbox, new_row
from bot.core.vocab import template_key
from bot.store import consent, planning

PRIORITY_REPLY = 0
PRIORITY_TRANSACTIONAL = 10
PRIORITY_MARKETING = 50
# A reply not delivered within this is obsolete (the conversation has moved on): the dispatcher
# retries it through a provider outage until then, and then closes it as `expired`, never sends it.
REPLY_VALID_FOR = timedelta(hours=1)
OUTBOX: sa.Table = Outbox.__table__  # type: ignore[attr-defined]
MESSAGE: sa.Table = Message.__table__  # type: ignore[attr-defined]


# session.info key: (order_pk, template) of every message queued in this session's transaction, flushed
# or not, so `has_pending_journey_messages` sees them without a query (or a flush).
QUEUED_IN_SESSION = "doorstep_queued_templates"


def new_event_id(now: datetime) -> str:
    """`evt_` + 10 hex of milliseconds + 12 random hex: unique and roughly time-ordered."""
    return f"evt_{int(now.timestamp() * 1000):010x}{secrets.token_hex(6)}"


def enqueue_message(
    *,
    session: Session,
    customer: Customer,
    channel: str,
    text: str,
    conversation_id: int | None = None,
    order_pk: int | None = None,
    template: str | None = None,
    buttons: list[tuple[str, str]] | None = None,
    priority: int = PRIORITY_REPLY,
    due_at: datetime | None = None,
    expires_at: datetime | None = None,
    dedupe_key: str | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
    locale: str | None = None,
    flush: bool = True,
) -> Message | None:
    """Queue one outbound message. Returns None when `dedupe_key` was already used.

    A reply (`PRIORITY_REPLY`) without its own `expires_at` is valid for `REPLY_VALID_FOR`. On a
    channel without buttons (SMS) the `buttons` are written into the text as numbers to reply with,
    in `locale` (default the customer's).
    `flush=False` (the conversation engine, which queues a batch's replies): the message and its
    outbox row get their ids at the session's next flush, one INSERT per table for the whole batch.
    """
    now = now or session_now(session)
    if expires_at is None and priority == PRIORITY_REPLY:
        expires_at = (due_at or now) + REPLY_VALID_FOR
    if dedupe_key is not None and session.exec(select(Outbox.id).where(Outbox.dedupe_key == dedupe_key)).first():
        return None
    # The send planner: channel and form, price and why (bot.core.planner); a fallback keeps its channel.
    planned = planning.plan_message(session, customer=customer, channel=channel, template=template, priority=priority,
                                    reply=priority == PRIORITY_REPLY, due_at=due_at, now=now,
                                    agent=bool((payload or {}).get("agent")),
                                    values=(payload or {}).get("whatsapp_values"))
    payload = {**(payload or {}), **planned.payload, "plan": planned.plan.as_dict()}
    if planned.plan.channel != channel and planned.plan.form != "none" and not payload.get("fallback_from"):
        # Moved before sending (e.g. WhatsApp outside the window, no approved template): recorded like the
        # dispatcher's fallback, so the message log and the inbox show the channel asked for.
        payload["fallback_from"] = channel
        channel = planned.plan.channel
    due_at = planned.due_at
    if buttons:
        numbered = choices.with_choices(text, buttons, channel, locale or customer.locale)
        if numbered != text:
            payload["numbered"] = True  # the choices are in the text already (a later SMS fallback must not repeat them)
            text = numbered
    scheduled = due_at is not None and due_at > now
    message = new_row(  # not Message(...): a reply's two rows cost 240 µs that way, 20 here (`new_row`)
        Message,
        conversation_id=conversation_id,
        customer_id=customer.id,
        order_pk=order_pk,
        direction="out",
        channel=channel,
        text=text,
        status="scheduled" if scheduled else "queued",
        template=template,
        due_at=due_at or now,
        created_at=now,
        plan=payload["plan"],
    )
    row = new_row(
        Outbox,
        kind="message",
        channel=channel,
        priority=priority,
        due_at=due_at or now,
        first_due_at=due_at or now,
        expires_at=expires_at,
        message=message,  # its id is filled in at flush: no flush here (one INSERT per table per batch)
        order_pk=order_pk,
        customer_id=customer.id,
        payload={**(payload or {}), **({"buttons": buttons, "locale": locale or customer.locale} if buttons else {}),
                 "template": template},
        dedupe_key=dedupe_key,
        created_at=now,
        updated_at=now,
    )
    if dedupe_key is None:
        session.add(row)  # nothing to collide with: no savepoint (a round trip each way on PostgreSQL)
        if flush:
            session.flush()
    elif not try_insert(session, row):
        if message in session:
            session.expunge(message)
        return None
    if order_pk is not None and template:
        session.info.setdefault(QUEUED_IN_SESSION, set()).add((order_pk, template))
    return message


def emit_event(*, session: Session, type_: str, order_id: str | None, data: dict[str, Any] | None = None,
               order_pk: int | None = None, now: datetime | None = None) -> LogisticsEvent:
    """Append a logistics event to the feed and queue its webhook delivery."""
    now = now or session_now(session)
    event = new_row(LogisticsEvent, id=new_event_id(now), type=type_, order_id=order_id,
                    data={"order_id": order_id, **(data or {})}, created_at=now)
    session.add(event)
    session.add(new_row(Outbox, kind="webhook", event_id=event.id, order_pk=order_pk, priority=PRIORITY_TRANSACTIONAL,
                        # 10 tries = integrations.logistics.RETRY_DELAYS_SECONDS; then dead-lettered.
                        due_at=now, created_at=now, updated_at=now, max_attempts=10,
                        expires_at=now + timedelta(days=4)))
    return event


def event_envelope(event: LogisticsEvent) -> dict[str, Any]:
    """The webhook body and feed item of DESIGN.md."""
    return {"id": event.id, "type": event.type, "created_at": event.created_at.isoformat(), "data": event.data}


def cancel_superseded(session: Session, *, order: Order, journeys: tuple[str, ...], timers: tuple[str, ...],
                      reason: str, now: datetime, held_only: bool = False) -> int:
    """Cancel this order's pending messages of `journeys` (only those held for later: `held_only`)
    and pending `timers`: a later event, an answer or the conversation made them pointless."""
    cancelled = 0
    if journeys:
        # A held COD question is an open question, not news: only a real supersession drops it.
        templates = [template_key(j) for j in journeys] + (
            ["journey.order_confirmed_cod"] if "order_confirmed" in journeys and not held_only else [])
        query = select(Outbox, Message).join(Message, col(Message.id) == col(Outbox.message_id)).where(
            Outbox.order_pk == order.id, Outbox.status == "pending", col(Message.template).in_(templates))
        if held_only:
            query = query.where(col(Outbox.due_at) > now)
        # Locked (PostgreSQL): a row the dispatcher is claiming right now is re-read after its claim
        # commits, and no longer matches `pending`, instead of being marked cancelled while it is sent.
        rows = session.exec(query.with_for_update(of=Outbox)).all()
        for row, message in rows:
            cancel_row(session, row, message, reason=reason, now=now)
            cancelled += 1
    if timers:
        for timer in session.exec(select(JourneyTimer).where(
                JourneyTimer.order_pk == order.id, JourneyTimer.status == "pending",
                col(JourneyTimer.kind).in_(timers))):
            timer.status = "cancelled"
            timer.outcome = reason[:200]
            session.add(timer)
    return cancelled


def journey_templates(journeys: tuple[str, ...]) -> list[str]:
    return [template_key(j) for j in journeys] + ["journey.order_confirmed_cod"]


def has_pending_journey_messages(session: Session, order_pks: list[int], journeys: tuple[str, ...], *,
                                 pending_before: set[int] | None = None) -> bool:
    """Whether a message of one of `journeys` for these orders waits in the outbox: one light query (no
    ORM objects, no locks) before `cancel_superseded`, which the usual turn then never needs.

    `pending_before`: the orders with such a message when the transaction began
    (`orders_with_pending_journey_messages`, read once for a batch): then no query at all."""
    if not order_pks:
        return False
    templates = journey_templates(journeys)
    queued = session.info.get(QUEUED_IN_SESSION, ())
    if any((pk, template) in queued for pk in order_pks for template in templates):
        return True  # queued in this transaction (flushed or not): the full check looks at it
    if pending_before is not None:
        return not pending_before.isdisjoint(order_pks)
    with session.no_autoflush:  # what this transaction queued was just checked above; a flush costs a round trip
        return session.execute(
            sa.select(OUTBOX.c.id).join(MESSAGE, MESSAGE.c.id == OUTBOX.c.message_id)
            .where(OUTBOX.c.order_pk.in_(order_pks), OUTBOX.c.status == "pending", MESSAGE.c.template.in_(templates))
            .limit(1)).first() is not None


def orders_with_pending_journey_messages(session: Session, order_pks: list[int], journeys: tuple[str, ...]) -> set[int]:
    """The orders among `order_pks` with a message of one of `journeys` waiting in the outbox (one query
    for a batch of turns; each turn then asks `has_pending_journey_messages(…, pending_before=…)`)."""
    if not order_pks:
        return set()
    with session.no_autoflush:
        return set(session.execute(
            sa.select(OUTBOX.c.order_pk).join(MESSAGE, MESSAGE.c.id == OUTBOX.c.message_id)
            .where(one_of(session, OUTBOX.c.order_pk, order_pks), OUTBOX.c.status == "pending",
                   MESSAGE.c.template.in_(journey_templates(journeys))).distinct()).scalars())


def set_status(session: Session, row: Outbox, message: Message | None, status: str, *, reason: str,
               now: datetime, code: str | None = None) -> None:
    """Move an outbox row and its message to `status` (held, cancelled, expired, …) with the reason shown in
    the message log; the row leaves any lease. `code` sets the message's error code when given."""
    row.status = status
    row.claimed_until = None
    row.last_error = reason[:500]
    row.updated_at = now
    session.add(row)
    if message is not None:
        message.status = status
        message.error = reason[:500]
        if code is not None:
            message.error_code = code
        session.add(message)


def cancel_row(session: Session, row: Outbox, message: Message | None, *, reason: str, now: datetime,
               code: str = "superseded") -> None:
    set_status(session, row, message, "cancelled", reason=reason, now=now, code=code)


def mark_opted_out(session: Session, customer_id: int, channel: str, *, code: str = "") -> None:
    """The provider says the customer opted out of `channel` (Twilio 21610, Telegram 403 "bot was blocked by
    the user", Viber "not subscribed"): nothing more goes there."""
    customer = session.get(Customer, customer_id)
    if customer is not None:
        source = "telegram.blocked" if channel == "telegram" else "provider"
        consent.set_consent(session, customer, channel, opted_out=True, source=source, detail=code)
