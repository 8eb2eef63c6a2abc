"""The gateway: the one entry point for an inbound message from any channel.

Three steps, so a webhook is acknowledged as soon as the message is safely
stored, and never waits for anything but that:

1. store (the acknowledgement) — one `INSERT … ON CONFLICT DO NOTHING` on
   (channel, provider message id): the message as `received`, not yet tied
   to a customer (`conversation_id` NULL), with its sender (phone, Telegram
   chat, profile name, deep-link token, shared contact) in `message.sender`.
   A duplicate inserts nothing. The webhooks store through `AckWriter`
   (bot/conversation/ack.py), which group-commits concurrent requests;
   `receive` stores one message in its own transaction.
2. identify — in arrival (id) order, link a Telegram chat (deep link or own
   contact), find or create the customer and their conversation, set them on
   the message and clear `sender`. PostgreSQL: the unidentified rows are
   locked (`FOR UPDATE`, in id order), so two processors never identify one
   message twice and a customer's messages get their conversation in order.
3. process — lock the conversation row, then handle *every* unprocessed
   inbound message of that conversation in arrival order (so two messages
   racing in are answered in order), writing state changes and replies to
   the outbox in one transaction.

`handle_inbound` does all three, for the console channel and tests;
`process_messages` does 2 and 3 for a batch of stored messages in one
transaction (the webhooks' background work): the batch's senders, their
customers and conversations are read in a few queries, every row change of
the batch is flushed once (one statement per table). Messages a crash left
`received` (identified or not) are picked up again by `process_pending`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from bot.conversation.engine import handle_message
from bot.conversation.turn import Turn
from bot.core.channels import InboundMessage, sanitise_text
from bot.core.db import Database, constants_in, list_param
from bot.core.models import Conversation, Customer, Message, Order
from bot.core.phones import mask
from bot.core.runtime import Runtime
from bot.core.vocab import INFORMATIONAL_JOURNEYS
from bot.journeys.hooks import Journeys
from bot.store import outbox
from bot.store.conversations import conversation_for
from bot.store.linking import link_telegram_chat
from bot.store.orders import get_or_create_customer

log = logging.getLogger(__name__)
RECOVERY_BATCH = 50  # conversations per transaction when the recovery tick catches up

MESSAGE = Message.__table__  # type: ignore[attr-defined]
CONVERSATION = Conversation.__table__  # type: ignore[attr-defined]
OUTBOX = outbox.OUTBOX
ORDERS = Order.__table__  # type: ignore[attr-defined]


@dataclass
class Received:
    message_id: int | None  # None for a duplicate
    duplicate: bool


@dataclass
class Handled:
    duplicate: bool
    turns: list[Turn] = field(default_factory=list)

    @property
    def replies(self) -> list[Message]:
        return [m for t in self.turns for m in t.replies]


# ------------------------------------------------------------------ 1. store (the acknowledgement)


def inbound_row(inbound: InboundMessage, *, now: datetime) -> dict[str, Any]:
    """The message table's row for an inbound message, unidentified (the INSERT's parameters)."""
    sender = {"phone": inbound.phone, "telegram_chat_id": inbound.telegram_chat_id,
              "profile_name": sanitise_text(inbound.profile_name)[:200], "link_token": inbound.link_token,
              "contact_phone": inbound.contact_phone}
    return {"direction": "in", "channel": inbound.channel, "provider_message_id": inbound.provider_message_id,
            "text": sanitise_text(inbound.text), "media_urls": [sanitise_text(u)[:1000] for u in inbound.media_urls],
            "entities": [], "status": "received", "created_at": inbound.received_at or now,
            "sender": {k: v for k, v in sender.items() if v}}


@functools.lru_cache(maxsize=4)
def _insert(dialect: str) -> Any:
    """Built once per dialect: building it, and its cache key, cost more than SQLite took to run it."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(MESSAGE).on_conflict_do_nothing(index_elements=["channel", "provider_message_id"])
            .returning(MESSAGE.c.id, MESSAGE.c.channel, MESSAGE.c.provider_message_id))


def store_rows(connection: sa.Connection, rows: list[dict[str, Any]]) -> list[int | None]:
    """Insert inbound rows in the caller's transaction: one multi-row INSERT … ON CONFLICT DO NOTHING.

    Returns, per row, the new message id, or None for a duplicate (stored before, or the same
    provider id earlier in `rows`). Rows without a provider id are never duplicates."""
    statement = _insert(connection.dialect.name)
    keyed: dict[tuple[str, str], dict[str, Any]] = {}
    ids: list[int | None] = []
    for row in rows:
        if row["provider_message_id"] is None:
            ids.append(connection.execute(statement, row).scalar_one())
        else:
            keyed.setdefault((row["channel"], row["provider_message_id"]), row)
            ids.append(None)
    stored: dict[tuple[str, str], int] = {}
    if keyed:
        result = connection.execute(statement, list(keyed.values()))
        stored = {(r.channel, r.provider_message_id): r.id for r in result}
    for index, row in enumerate(rows):
        if row["provider_message_id"] is not None:
            key = (row["channel"], row["provider_message_id"])
            if keyed.get(key) is row:
                ids[index] = stored.get(key)
    return ids


def receive(db: Database, inbound: InboundMessage, *, now: datetime) -> Received:
    """Store one inbound message in its own transaction (step 1). Safe to call twice with one provider id."""
    def unit() -> Received:
        with db.session() as session:
            [message_id] = store_rows(session.connection(), [inbound_row(inbound, now=now)])
        return Received(message_id=message_id, duplicate=message_id is None)

    return db.retry_on_disconnect(unit, what="receive")


# ------------------------------------------------------------------ 2. identify


def identify(db: Database, *, up_to: int) -> None:
    """Identify every unidentified inbound message with an id up to `up_to`, in id order (step 2)."""
    def unit() -> None:
        db.ack_priority.yield_to_acks()
        with db.session() as session:
            _identify(db, session, up_to)

    db.retry_on_disconnect(unit, what="identify")


@dataclass
class Identified:
    """What `_identify` found: each identified message's conversation, the senders' customers, and what
    the batch's handling can reuse in the same transaction instead of reading it again."""

    conversations: dict[int, int] = field(default_factory=dict)  # message id -> conversation id
    customers: dict[int, Customer] = field(default_factory=dict)
    messages: dict[int, list[Message]] = field(default_factory=dict)  # conversation id -> identified now, in order
    # Conversations read by the batch query (sender found), and which of them had a message identified
    # before this transaction and still waiting (a crash, a failed batch): only those are read again.
    loaded: dict[int, Conversation] = field(default_factory=dict)
    waiting_before: set[int] = field(default_factory=set)
    locked: set[int] = field(default_factory=set)  # PostgreSQL: conversations the identifying query locked


def _waiting_flag() -> Any:
    """A column: whether the conversation has an identified inbound message still waiting (in the database)."""
    return sa.exists().where(MESSAGE.c.conversation_id == CONVERSATION.c.id, MESSAGE.c.direction == "in",
                             MESSAGE.c.status == "received").label("waiting")


def _any_of(column: Any, name: str, postgres: bool) -> Any:
    """`column IN :name` for a list bound at execution as one parameter (`db.list_param`)."""
    return list_param(postgres, column, name)


@functools.cache
def _statements(postgres: bool) -> dict[str, Any]:
    """The batch's queries, built once per backend (building and keying a statement costs more CPU than
    SQLite takes to run it); their lists and bounds are parameters."""
    unidentified = select(Message).where(Message.direction == "in", Message.status == "received",
                                         col(Message.conversation_id).is_(None),
                                         col(Message.id) <= sa.bindparam("up_to")).order_by(col(Message.id))
    senders = select(Customer, Conversation, _waiting_flag()).outerjoin(
        Conversation, col(Conversation.customer_id) == col(Customer.id))
    # PostgreSQL, when the batch is handled in the same transaction: the senders that have a
    # conversation, with it locked (`Database.locked`, in id order) by the same statement (an inner
    # join: PostgreSQL locks no row on an outer join's nullable side).
    locking = (select(Customer, Conversation, _waiting_flag())
               .join(Conversation, col(Conversation.customer_id) == col(Customer.id))
               .order_by(col(Conversation.id)).with_for_update(key_share=True, of=CONVERSATION)
               .execution_options(populate_existing=True))
    by_phone, by_chat = _any_of(col(Customer.phone), "phones", postgres), _any_of(col(Customer.telegram_chat_id),
                                                                                  "chats", postgres)
    held = (sa.exists().select_from(OUTBOX.join(MESSAGE, MESSAGE.c.id == OUTBOX.c.message_id))
            .where(OUTBOX.c.order_pk == ORDERS.c.id, OUTBOX.c.status == "pending",
                   constants_in(MESSAGE.c.template, outbox.journey_templates(INFORMATIONAL_JOURNEYS))).label("held"))
    newest_first = (col(Order.created_at).desc(), col(Order.id).desc())
    conversations = (select(Conversation, _waiting_flag()).where(_any_of(col(Conversation.id), "ids", postgres))
                     .order_by(col(Conversation.id)).execution_options(populate_existing=True))
    return {
        # in id order, locked on PostgreSQL: concurrent identifiers queue, then skip what is done
        "unidentified": unidentified.with_for_update() if postgres else unidentified,
        "by_phone": senders.where(by_phone),
        "by_chat": senders.where(by_chat),
        "by_either": senders.where(sa.or_(by_phone, by_chat)),
        "locking_by_phone": locking.where(by_phone),
        "locking_by_chat": locking.where(by_chat),
        "locking_by_either": locking.where(sa.or_(by_phone, by_chat)),
        # `Database.locked`: FOR NO KEY UPDATE on PostgreSQL, in id order
        "conversations": conversations.with_for_update(key_share=True) if postgres else conversations,
        "customers_orders": select(Customer, Order, held).outerjoin(Order, col(Order.customer_id) == col(Customer.id))
        .where(_any_of(col(Customer.id), "ids", postgres)).order_by(col(Customer.id), *newest_first)
        .execution_options(populate_existing=True),
        "orders": select(Order, held).where(_any_of(col(Order.customer_id), "ids", postgres)).order_by(*newest_first),
    }


def _identify(db: Database, session: Session, up_to: int, *, flush: bool = True, lock: bool = False) -> Identified:
    """Identify in the caller's transaction; returns the conversation of each message it identified.
    The senders' customers and conversations are read in one query for the whole batch; only a
    sender not found there (or a Telegram link) takes the one-by-one path, which creates them race-safe.
    `flush=False` (identify and handle in one transaction): the messages' new conversation goes out
    with their UPDATE at the end of the turn, one UPDATE per message instead of two.
    `lock` (the caller locks the batch's conversations next, in this transaction): on PostgreSQL the
    senders' existing conversations are locked by the query that reads them (`identified.locked`), one
    statement instead of two; identifying alone never waits for a busy conversation."""
    statements = _statements(db.is_postgres)
    messages = session.scalars(statements["unidentified"], {"up_to": up_to}).all()
    identified = Identified()
    if not messages:
        return identified
    senders: list[dict[str, Any]] = [message.sender or {} for message in messages]
    # A Telegram link (deep link, shared contact) can move a chat to another customer mid-batch: such a
    # batch finds each sender afresh, in order, instead of from what was read before it.
    known = not any(s.get("telegram_chat_id") and (s.get("link_token") or s.get("contact_phone")) for s in senders)
    by_phone: dict[str, Customer] = {}
    by_chat: dict[str, Customer] = {}
    conversations: dict[int, Conversation] = {}
    flush = flush or not known  # a link may change customers: they go out before the batch reads them again
    if known:
        phones = sorted({s["phone"] for s in senders if s.get("phone")})
        chats = sorted({s["telegram_chat_id"] for s in senders if s.get("telegram_chat_id")})
        if phones or chats:  # the customers with their conversations, in one query
            with session.no_autoflush:
                rows = _senders(db, session, phones, chats, identified, lock=lock)
            for customer, conversation, waiting in rows:
                if customer.phone:
                    by_phone[customer.phone] = customer
                if customer.telegram_chat_id:
                    by_chat[customer.telegram_chat_id] = customer
                if conversation is not None:
                    conversations[customer.id or 0] = conversation
                    identified.loaded[conversation.id or 0] = conversation
                    if waiting:
                        identified.waiting_before.add(conversation.id or 0)
    for message, sender in zip(messages, senders, strict=True):
        phone, chat = sender.get("phone"), sender.get("telegram_chat_id")
        if chat and (sender.get("link_token") or sender.get("contact_phone")):
            link_telegram_chat(session, chat, link_token=sender.get("link_token"),
                               contact_phone=sender.get("contact_phone"))
        found = (by_phone.get(phone) if phone else None) or (by_chat.get(chat) if chat else None)
        if found is None:
            flush = True
            customer, created = get_or_create_customer(
                session=session, phone=phone, telegram_chat_id=chat,
                defaults={"channel": message.channel, "name": str(sender.get("profile_name") or "")[:200]},
            )
        else:
            customer, created = found, False
        if chat and customer.telegram_chat_id is None:
            customer.telegram_chat_id = chat
            session.add(customer)
            flush = True  # a changed customer goes out now: the batch may read its customers again
        if known:  # the next message of this sender finds what find_customer would find now
            if customer.phone:
                by_phone[customer.phone] = customer
            if customer.telegram_chat_id:
                by_chat[customer.telegram_chat_id] = customer
        conversation = conversations.get(customer.id or 0)
        if conversation is None:
            conversation = conversation_for(session, customer, message.channel)
            flush = True
            if known:
                conversations[customer.id or 0] = conversation
        message.customer_id, message.conversation_id, message.sender = customer.id, conversation.id, None
        identified.conversations[message.id or 0] = conversation.id or 0
        identified.customers[customer.id or 0] = customer
        identified.messages.setdefault(conversation.id or 0, []).append(message)
        session.add(message)
        if log.isEnabledFor(logging.INFO):
            log.info("inbound identified channel=%s customer=%s new_customer=%s message=%s",
                     message.channel, mask(customer.phone), created, message.id)
    if flush:
        session.flush()  # the batch's messages in one statement
    return identified


def _senders(db: Database, session: Session, phones: list[str], chats: list[str], identified: Identified, *,
             lock: bool) -> list[Any]:
    """The customers with these phones or chats, each with its conversation (None: none yet) and
    whether one of its identified messages waits. `lock` on PostgreSQL: the conversations found are
    locked in the same statement (recorded in `identified.locked`); only senders it did not find (no
    conversation yet, or no customer) are read again, unlocked, as without `lock`. The batch's other
    conversations (created now, or of a message identified earlier) are locked after these, so the
    batch's locks are in id order except when such a conversation has a lower id than one locked here:
    if another batch holds it and waits for one of these, PostgreSQL aborts one of the two as a
    deadlock, and that batch is handled again conversation by conversation (`process_messages`)."""
    statements = _statements(db.is_postgres)

    def which(phones: list[str], chats: list[str]) -> str:
        return "by_either" if phones and chats else "by_phone" if phones else "by_chat"

    if not (lock and db.is_postgres):
        return list(session.execute(statements[which(phones, chats)], {"phones": phones, "chats": chats}))
    rows = list(session.execute(statements["locking_" + which(phones, chats)], {"phones": phones, "chats": chats}))
    identified.locked.update(conversation.id or 0 for _, conversation, _ in rows)
    found_phones = {customer.phone for customer, _, _ in rows}
    found_chats = {customer.telegram_chat_id for customer, _, _ in rows}
    rest_phones = [p for p in phones if p not in found_phones]
    rest_chats = [c for c in chats if c not in found_chats]
    if rest_phones or rest_chats:
        rows += session.execute(statements[which(rest_phones, rest_chats)],
                                {"phones": rest_phones, "chats": rest_chats})
    return rows


def conversation_of(db: Database, message_id: int) -> int | None:
    """The conversation of a stored inbound message, identifying it (and every earlier one) first if needed."""
    def known() -> int | None:
        with db.read() as session:
            return session.exec(select(Message.conversation_id).where(Message.id == message_id)).first()

    conversation_id = db.retry_on_disconnect(known, what="identify")
    if conversation_id is None:
        identify(db, up_to=message_id)
        conversation_id = db.retry_on_disconnect(known, what="identify")
    return conversation_id


def process(db: Database, runtime: Runtime, conversation_id: int, *, journeys: Journeys | None = None) -> list[Turn]:
    """Handle all unprocessed inbound messages of one conversation, in order (step 2).

    `journeys` asks the questions that follow an answer (the address after a COD yes)."""
    runtime.warm_up()  # the model loads outside the transaction (a no-op once loaded)
    return db.retry_on_disconnect(lambda: _process(db, runtime, conversation_id, journeys=journeys), what="process")


def _process(db: Database, runtime: Runtime, conversation_id: int, *, journeys: Journeys | None) -> list[Turn]:
    turns: list[Turn] = []
    db.ack_priority.yield_to_acks()
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
            conversation.channel = message.channel  # where the customer last wrote
            conversation.last_inbound_at = message.created_at
            # handle_message marks it processed with its classification (one UPDATE, not two);
            # a failure rolls that back with the rest of the turn.
            turn = handle_message(session=session, runtime=runtime, conversation=conversation, customer=customer,
                                  message=message, journeys=journeys)
            session.add(message)
            session.add(conversation)
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
    db.ack_priority.yield_to_acks()
    with db.session() as session:
        return _handle_conversations(db, session, runtime, ids, journeys=journeys)


def _handle_conversations(db: Database, session: Session, runtime: Runtime, ids: list[int], *,
                          journeys: Journeys | None, identified: Identified | None = None) -> list[Turn]:
    """Lock the conversations (in id order) and handle their waiting messages in the caller's transaction;
    each conversation's messages in arrival order.

    Read per batch: the conversations (locked; with whether a message identified earlier waits), the
    customers with their orders and whether each order has a journey message held in the outbox, and
    only when one waits, the earlier messages. `identified` (this transaction identified the batch):
    its messages are in hand, and on SQLite, where this transaction has held the one write lock since
    it began, its conversations and customers are current and are not read again. On PostgreSQL the
    conversations the identifying query locked are current (it read them as it locked them); the others
    are read as they are locked, and the customers are read again once every conversation is locked
    (another process's turn may have changed them meanwhile)."""
    turns: list[Turn] = []
    identified = identified or Identified()
    with session.no_autoflush:  # the batch's changes go out once, at commit
        conversations = _locked_conversations(db, session, ids, identified)
        customers, orders, pending_journeys = _customers_and_orders(db, session, conversations, identified)
        waiting = _waiting_messages(session, conversations, identified)
    served: set[int] = set()
    for conversation in conversations.values():
        customer = customers[conversation.customer_id]
        for message in waiting.get(conversation.id or 0, []):
            # The batch's orders serve a customer's first turn; a later turn reads them again (the
            # first may have changed which orders there are, e.g. an erasure).
            preloaded = orders.get(customer.id or 0, []) if customer.id not in served else None
            served.add(customer.id or 0)
            conversation.channel = message.channel  # where the customer last wrote
            conversation.last_inbound_at = message.created_at
            turn = handle_message(session=session, runtime=runtime, conversation=conversation, customer=customer,
                                  message=message, journeys=journeys, orders=preloaded,
                                  pending_journeys=pending_journeys)
            session.add(message)
            session.add(conversation)
            turns.append(turn)
    # One flush for the batch (at commit): each table's rows go out in one statement, not one per turn.
    return turns


def _locked_conversations(db: Database, session: Session, ids: list[int],
                          identified: Identified) -> dict[int, Conversation]:
    """The conversations `ids`, locked, in id order; records in `identified.waiting_before` which of
    them have a message identified earlier still waiting. Those already in hand are not read again:
    on SQLite every one the identifying query read, on PostgreSQL those it locked."""
    missing = [i for i in ids if i not in (identified.locked if db.is_postgres else identified.loaded)]
    found = {i: identified.loaded[i] for i in ids if i in identified.loaded}
    if missing:
        for conversation, waiting in session.execute(_statements(db.is_postgres)["conversations"], {"ids": missing}):
            found[conversation.id or 0] = conversation
            if waiting:
                identified.waiting_before.add(conversation.id or 0)
            else:
                identified.waiting_before.discard(conversation.id or 0)
    return {i: found[i] for i in sorted(found)}


def _customers_and_orders(db: Database, session: Session, conversations: dict[int, Conversation],
                          identified: Identified) -> tuple[dict[int, Customer], dict[int, list[Order]], set[int]]:
    """The conversations' customers, their orders (newest first), and the orders with an informational
    journey message waiting in the outbox (`outbox.orders_with_pending_journey_messages`), in one query."""
    customer_ids = {c.customer_id for c in conversations.values()}
    customers = {i: c for i, c in identified.customers.items() if i in customer_ids} if db.is_sqlite else {}
    statements = _statements(db.is_postgres)
    rows: list[tuple[Order | None, Any]] = []
    if missing := customer_ids - customers.keys():  # with their orders (an outer join: a customer may have none)
        for customer, order, held in session.execute(statements["customers_orders"], {"ids": sorted(missing)}):
            customers[customer.id or 0] = customer
            rows.append((order, held))
    if known := customer_ids - missing:
        rows += [(order, held) for order, held in session.execute(statements["orders"], {"ids": sorted(known)})]
    orders: dict[int, list[Order]] = {}
    pending: set[int] = set()
    for order, held in rows:
        if order is not None:
            orders.setdefault(order.customer_id, []).append(order)
            if held:
                pending.add(order.id or 0)
    return customers, orders, pending


def _waiting_messages(session: Session, conversations: dict[int, Conversation],
                      identified: Identified) -> dict[int, list[Message]]:
    """Each conversation's waiting inbound messages in arrival order: those identified in this transaction
    (in hand) and, only where one waits, those identified before."""
    waiting: dict[int, dict[int, Message]] = {}
    for conversation_id in conversations:
        for message in identified.messages.get(conversation_id, []):
            waiting.setdefault(conversation_id, {})[message.id or 0] = message
    if before := [i for i in conversations if i in identified.waiting_before]:
        for message in session.exec(select(Message).where(
                col(Message.conversation_id).in_(before), Message.direction == "in", Message.status == "received",
        ).order_by(col(Message.id))):
            waiting.setdefault(message.conversation_id or 0, {})[message.id or 0] = message
    return {i: [messages[m] for m in sorted(messages)] for i, messages in waiting.items()}


def _identify_and_handle(db: Database, runtime: Runtime, message_ids: list[int], *,
                         journeys: Journeys | None) -> list[Turn]:
    """Identify (every unidentified message up to the batch's last) and handle the batch's conversations
    in one transaction."""
    db.ack_priority.yield_to_acks()
    with db.session() as session:
        identified = _identify(db, session, max(message_ids), flush=False, lock=True)
        conversation_ids = {identified.conversations[m] for m in message_ids if m in identified.conversations}
        if earlier := [m for m in message_ids if m not in identified.conversations]:  # identified before (recovery)
            with session.no_autoflush:
                conversation_ids.update(c for c in session.exec(select(Message.conversation_id).where(
                    col(Message.id).in_(earlier))) if c is not None)
        if not conversation_ids:
            return []
        return _handle_conversations(db, session, runtime, sorted(conversation_ids), journeys=journeys,
                                     identified=identified)


def process_message(db: Database, runtime: Runtime, message_id: int, *,
                    journeys: Journeys | None = None) -> list[Turn]:
    """Identify a stored inbound message (and every earlier one), then process its conversation (steps 2 + 3)."""
    conversation_id = conversation_of(db, message_id)
    if conversation_id is None:
        return []
    return process(db, runtime, conversation_id, journeys=journeys)

def process_messages(db: Database, runtime: Runtime, message_ids: list[int], *,
                     journeys: Journeys | None = None) -> list[Turn]:
    """Identify stored inbound messages (and every earlier one) and handle their conversations, all in
    one transaction: the webhooks' background work, batched. If that fails, identifying runs alone and
    then each conversation alone, so one bad message holds back no one else (its conversation is left
    for `process_pending` and logged)."""
    if not message_ids:
        return []
    runtime.warm_up()  # the model loads outside the transaction (a no-op once loaded)
    try:
        return db.retry_on_disconnect(
            lambda: _identify_and_handle(db, runtime, message_ids, journeys=journeys), what="process")
    except Exception:
        log.warning("a batch of %d messages failed; handling each conversation alone", len(message_ids),
                    exc_info=True)
    identify(db, up_to=max(message_ids))

    def known() -> set[int]:
        with db.read() as session:
            return {c for c in session.exec(select(Message.conversation_id).where(
                col(Message.id).in_(message_ids))) if c is not None}

    turns: list[Turn] = []
    for conversation_id in sorted(db.retry_on_disconnect(known, what="identify")):
        try:
            turns.extend(process(db, runtime, conversation_id, journeys=journeys))
        except Exception:
            log.exception("processing failed conversation=%s; will be retried", conversation_id)
    return turns


def handle_inbound(db: Database, runtime: Runtime, inbound: InboundMessage, *,
                   journeys: Journeys | None = None) -> Handled:
    received = receive(db, inbound, now=runtime.now())
    if received.message_id is None:
        return Handled(duplicate=True)
    return Handled(duplicate=False, turns=process_message(db, runtime, received.message_id, journeys=journeys))


def process_pending(db: Database, runtime: Runtime, *, older_than: timedelta = timedelta(seconds=5),
                    journeys: Journeys | None = None) -> int:
    """Recover inbound messages stored but never processed (a crash after the acknowledgement)."""
    cutoff = runtime.now() - older_than

    def unidentified() -> int | None:
        with db.read() as session:
            return session.exec(select(func.max(Message.id)).where(
                Message.direction == "in", Message.status == "received", col(Message.conversation_id).is_(None),
                col(Message.created_at) <= cutoff)).one()

    last = db.retry_on_disconnect(unidentified, what="recovery")
    if last is not None:
        identify(db, up_to=last)

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
