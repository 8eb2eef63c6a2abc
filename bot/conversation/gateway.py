"""The gateway: the one entry point for an inbound message from any channel.

Two steps, two transactions, so a webhook can be acknowledged as soon as the
message is safely stored:

1. `receive` — dedupe on (channel, provider message id), identify the
   customer, store the message as `received`. Commit.
2. `process` — lock the conversation row, then handle *every* unprocessed
   inbound message of that conversation in arrival order (so two messages
   racing in are answered in order), writing state changes and replies to
   the outbox in one transaction.

`handle_inbound` does both, for the console channel and tests. Messages left
`received` by a crash are picked up again by `process_pending`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.conversation.engine import handle_message
from bot.conversation.turn import Turn
from bot.core.channels import InboundMessage, sanitise_text
from bot.core.db import Database
from bot.core.models import Conversation, Customer, Message, Order
from bot.core.phones import mask
from bot.core.runtime import Runtime
from bot.journeys.hooks import Journeys
from bot.store.conversations import conversation_for
from bot.store.orders import get_or_create_customer

log = logging.getLogger(__name__)
RECOVERY_BATCH = 50  # conversations per transaction when the recovery tick catches up


@dataclass
class Received:
    message_id: int | None
    conversation_id: int | None
    duplicate: bool


@dataclass
class Handled:
    duplicate: bool
    turns: list[Turn] = field(default_factory=list)

    @property
    def replies(self) -> list[Message]:
        return [m for t in self.turns for m in t.replies]


def receive(db: Database, inbound: InboundMessage, *, now: datetime) -> Received:
    """Store the inbound message (step 1). Safe to call twice with the same provider id."""
    return db.retry_on_disconnect(lambda: _receive(db, inbound, now=now), what="receive")


def _receive(db: Database, inbound: InboundMessage, *, now: datetime) -> Received:
    text = sanitise_text(inbound.text)
    try:
        with db.session() as session:
            if inbound.provider_message_id:
                dup = session.exec(select(Message.id).where(
                    Message.channel == inbound.channel, Message.provider_message_id == inbound.provider_message_id,
                )).first()
                if dup is not None:
                    return Received(message_id=dup, conversation_id=None, duplicate=True)
            customer, created = get_or_create_customer(
                session=session, phone=inbound.phone, telegram_chat_id=inbound.telegram_chat_id,
                defaults={"channel": inbound.channel, "name": inbound.profile_name[:200]},
            )
            if inbound.telegram_chat_id and customer.telegram_chat_id is None:
                customer.telegram_chat_id = inbound.telegram_chat_id
            conversation = conversation_for(session, customer, inbound.channel)
            conversation.channel = inbound.channel
            conversation.last_inbound_at = inbound.received_at or now
            message = Message(
                conversation_id=conversation.id, customer_id=customer.id, direction="in", channel=inbound.channel,
                provider_message_id=inbound.provider_message_id, text=text,
                media_urls=[sanitise_text(u)[:1000] for u in inbound.media_urls], status="received",
                created_at=inbound.received_at or now,
            )
            session.add(message)
            session.add(conversation)
            session.flush()
            log.info("inbound stored channel=%s customer=%s new_customer=%s message=%s",
                     inbound.channel, mask(customer.phone), created, message.id)
            return Received(message_id=message.id, conversation_id=conversation.id, duplicate=False)
    except IntegrityError:
        # The same provider id committed by a concurrent request: a duplicate, not an error.
        log.info("inbound duplicate (concurrent) channel=%s", inbound.channel)
        return Received(message_id=None, conversation_id=None, duplicate=True)


def process(db: Database, runtime: Runtime, conversation_id: int, *, journeys: Journeys | None = None) -> list[Turn]:
    """Handle all unprocessed inbound messages of one conversation, in order (step 2).

    `journeys` asks the questions that follow an answer (the address after a COD yes)."""
    runtime.warm_up()  # the model loads outside the transaction (a no-op once loaded)
    return db.retry_on_disconnect(lambda: _process(db, runtime, conversation_id, journeys=journeys), what="process")


def _process(db: Database, runtime: Runtime, conversation_id: int, *, journeys: Journeys | None) -> list[Turn]:
    turns: list[Turn] = []
    with db.session() as session:
        db.lock_row(session, "conversation", conversation_id)
        conversation = session.get(Conversation, conversation_id, populate_existing=True)
        if conversation is None:
            return turns
        customer = session.get(Customer, conversation.customer_id)
        assert customer is not None
        pending = session.exec(
            select(Message).where(Message.conversation_id == conversation_id, Message.direction == "in",
                                  Message.status == "received").order_by(col(Message.id))
        ).all()
        for message in pending:
            # handle_message marks it processed with its classification (one UPDATE, not two);
            # a failure rolls that back with the rest of the turn.
            turn = handle_message(session=session, runtime=runtime, conversation=conversation, customer=customer,
                                  message=message, journeys=journeys)
            session.add(message)
            session.add(conversation)
            session.flush()
            turns.append(turn)
    return turns


def process_many(db: Database, runtime: Runtime, conversation_ids: list[int], *,
                 journeys: Journeys | None = None) -> list[Turn]:
    """`process` for several conversations in one transaction (set-based, for a busy process).

    The conversations are locked together (in id order), and they, their customers, their waiting
    messages and their customers' orders are read in four queries; one commit for the batch. Each
    conversation's messages are still handled in arrival order under its lock, exactly as `process`
    does. If the batch fails, each conversation is handled alone, so one bad message holds back no one
    else (its own conversation is left for `process_pending` and logged)."""
    ids = sorted(set(conversation_ids))
    if len(ids) <= 1:
        return process(db, runtime, ids[0], journeys=journeys) if ids else []
    runtime.warm_up()
    try:
        return db.retry_on_disconnect(lambda: _process_many(db, runtime, ids, journeys=journeys), what="process")
    except Exception:
        log.warning("a batch of %d conversations failed; handling each alone", len(ids), exc_info=True)
    turns: list[Turn] = []
    for conversation_id in ids:
        try:
            turns.extend(process(db, runtime, conversation_id, journeys=journeys))
        except Exception:
            log.exception("processing failed conversation=%s; will be retried", conversation_id)
    return turns


def _process_many(db: Database, runtime: Runtime, ids: list[int], *, journeys: Journeys | None) -> list[Turn]:
    turns: list[Turn] = []
    with db.session() as session:
        db.lock_rows(session, "conversation", ids)
        conversations = session.exec(select(Conversation).where(col(Conversation.id).in_(ids))
                                     .order_by(col(Conversation.id)).execution_options(populate_existing=True)).all()
        customer_ids = {c.customer_id for c in conversations}
        customers = {c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(customer_ids)))}
        orders: dict[int, list[Order]] = {}
        for order in session.exec(select(Order).where(col(Order.customer_id).in_(customer_ids))
                                  .order_by(col(Order.created_at).desc(), col(Order.id).desc())):
            orders.setdefault(order.customer_id, []).append(order)
        waiting: dict[int, list[Message]] = {}
        for message in session.exec(select(Message).where(
                col(Message.conversation_id).in_(ids), Message.direction == "in", Message.status == "received",
        ).order_by(col(Message.id))):
            waiting.setdefault(message.conversation_id or 0, []).append(message)
        served: set[int] = set()
        for conversation in conversations:
            customer = customers[conversation.customer_id]
            for message in waiting.get(conversation.id or 0, []):
                # The batch's orders serve a customer's first turn; a later turn reads them again (the
                # first may have changed which orders there are, e.g. an erasure).
                preloaded = orders.get(customer.id or 0, []) if customer.id not in served else None
                served.add(customer.id or 0)
                turn = handle_message(session=session, runtime=runtime, conversation=conversation, customer=customer,
                                      message=message, journeys=journeys, orders=preloaded)
                session.add(message)
                session.add(conversation)
                session.flush()
                turns.append(turn)
    return turns


def handle_inbound(db: Database, runtime: Runtime, inbound: InboundMessage, *,
                   journeys: Journeys | None = None) -> Handled:
    received = receive(db, inbound, now=runtime.now())
    if received.duplicate or received.conversation_id is None:
        return Handled(duplicate=True)
    return Handled(duplicate=False, turns=process(db, runtime, received.conversation_id, journeys=journeys))


def process_pending(db: Database, runtime: Runtime, *, older_than: timedelta = timedelta(seconds=5),
                    journeys: Journeys | None = None) -> int:
    """Recover inbound messages stored but never processed (a crash between the two steps)."""
    cutoff = runtime.now() - older_than

    def stranded() -> list[int | None]:
        with db.read() as session:
            return list(session.exec(
                select(Message.conversation_id).where(Message.direction == "in", Message.status == "received",
                                                      col(Message.created_at) <= cutoff).distinct()
            ).all())

    ids = [conversation_id for conversation_id in db.retry_on_disconnect(stranded, what="recovery")
           if conversation_id is not None]
    count = 0
    for start in range(0, len(ids), RECOVERY_BATCH):
        count += len(process_many(db, runtime, ids[start:start + RECOVERY_BATCH], journeys=journeys))
    return count
