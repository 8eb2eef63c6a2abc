"""Erasure of one customer's personal data (GDPR Art. 17) and the per-order message log.

`erase_customer` overwrites, in the caller's transaction, every column that
holds the customer's data or points at it: name, phone, Telegram id and link
token, addresses, tracking number and URL, order item extras, message texts,
media and extracted entities, provider ids and error texts that embed the
chat id or number, conversation slots, escalation notes, agents' internal notes and context packets
(open escalations are closed: nobody is left to answer), order-event notes
and data, logistics feed payloads, outbox payloads, and the Chatwoot contact
and conversation the escalations were mirrored to. It cancels the customer's
scheduled and pending messages and journey timers, and keeps only a salted
hash of the phone (`Customer.phone_hash`, salt in kv) so an opted-out number
stays opted out. The consent ledger keeps each change's channel, in/out, source
and time, tied to the anonymous customer row (proof that an opt-out was
honoured); its free-text details (the words sent, provider errors) are blanked. Idempotent; it never logs the number.

Overwritten values must not survive in the database *files* either. Once the
transaction commits, `purge_freed_storage` runs: on SQLite (every connection
has `secure_delete` on, so freed cells and pages are zeroed) it checkpoints
the write-ahead log into the main file and truncates it, so no old page image
stays in `-wal`; on PostgreSQL it vacuums the touched tables so the dead row
versions are reclaimed (see docs/privacy.md, for what that does
and does not guarantee).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from bot.core.db import try_insert
from bot.core.models import (
    ChatwootLink,
    ConsentEvent,
    Conversation,
    Customer,
    Escalation,
    EscalationNote,
    JourneyTimer,
    KeyValue,
    LogisticsEvent,
    Message,
    Order,
    OrderEvent,
    Outbox,
)
from bot.core.phones import forget_parsed_numbers, phone_hash
from bot.core.vocab import Owner
from bot.store import consent

log = logging.getLogger(__name__)

ERASED_TEXT = ""
ERASED_NOTE = "customer erased"
LOG_STATUSES = ("scheduled", "queued", "held", "sent", "delivered", "failed", "cancelled", "expired")
# Order item fields the shop needs for its books; anything else (engravings, gift notes) may be personal.
KEPT_ITEM_FIELDS = ("sku", "name", "qty", "price")
CHECKPOINT_WAIT_MS = 5000
# Every table erase_customer writes to: the ones whose freed space must be reclaimed afterwards.
TOUCHED_TABLES = tuple(str(model.__tablename__) for model in (
    Customer, Order, OrderEvent, LogisticsEvent, Conversation, Message, Outbox, Escalation, EscalationNote,
    JourneyTimer, ChatwootLink, ConsentEvent))


@dataclass(frozen=True)
class ErasureReport:
    found: bool
    already_erased: bool
    orders: int = 0
    messages: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"erased": self.found, "already_erased": self.already_erased, "orders": self.orders,
                "messages": self.messages, "cancelled_messages": self.cancelled}


def erase_customer(*, session: Session, phone: str, now: datetime) -> ErasureReport:
    """Erase the customer with this E.164 phone. Unknown and never-erased -> found=False.

    After the caller's transaction commits, the freed storage is purged (`purge_freed_storage`).
    """
    digest = phone_hash(phone, erasure_salt(session))
    customer = session.exec(select(Customer).where(Customer.phone == phone)).first()
    if customer is None:
        erased = session.exec(select(Customer.id).where(Customer.phone_hash == digest,
                                                        col(Customer.erased_at).is_not(None))).first()
        if erased is not None:
            purge_after_commit(session)  # finishes a purge an earlier erasure could not complete
        return ErasureReport(found=erased is not None, already_erased=erased is not None)
    customer_id = customer.id or 0
    identifiers = _identifiers(customer)

    orders = list(session.exec(select(Order).where(Order.customer_id == customer_id)))
    identifiers += [o.tracking_number for o in orders if o.tracking_number]
    for order in orders:
        _erase_order(session, order, now)
    order_pks = [o.id or 0 for o in orders]
    event_ids = _erase_order_events(session, order_pks, [o.order_id for o in orders])

    conversations = list(session.exec(select(Conversation).where(Conversation.customer_id == customer_id)))
    conversation_ids = [c.id or 0 for c in conversations]
    messages = list(session.exec(select(Message).where(or_(
        col(Message.customer_id) == customer_id, col(Message.order_pk).in_(order_pks or [-1]),
        col(Message.conversation_id).in_(conversation_ids or [-1])))))
    for message in messages:
        _erase_message(session, message, identifiers)
    for message in _unidentified_from(session, customer):
        _erase_message(session, message, identifiers)
        message.sender, message.status, message.error = None, "processed", ERASED_NOTE  # never identified now
        messages.append(message)
    cancelled = _erase_outbox(session, customer_id=customer_id, message_ids=[m.id or 0 for m in messages],
                              order_pks=order_pks, event_ids=event_ids, identifiers=identifiers, now=now)
    for timer in session.exec(select(JourneyTimer).where(JourneyTimer.customer_id == customer_id,
                                                         JourneyTimer.status == "pending")):
        timer.status = "cancelled"
        timer.outcome = ERASED_NOTE
        session.add(timer)
    for conversation in conversations:
        conversation.slots = {}
        conversation.flow = None
        conversation.state = ""
        conversation.owner = Owner.BOT  # its escalations are closed below: no agent is waiting on it
        conversation.expires_at = None
        session.add(conversation)
    _erase_escalations(session, customer_id, now)
    consent.forget_details(session, customer_id)

    customer.name = ""
    customer.phone = None
    customer.telegram_chat_id = None
    customer.telegram_link_token = None
    customer.email = None
    customer.viber_user_id = None
    customer.timezone = None
    customer.phone_hash = digest
    customer.erased_at = now
    customer.updated_at = now
    session.add(customer)
    purge_after_commit(session)
    return ErasureReport(found=True, already_erased=False, orders=len(orders), messages=len(messages),
                         cancelled=cancelled)


def _identifiers(customer: Customer) -> list[str]:
    """Strings that identify the customer wherever they are embedded (provider ids, error texts)."""
    found = [value for value in (customer.phone, customer.telegram_chat_id, customer.telegram_link_token,
                                 customer.email, customer.viber_user_id) if value]
    if customer.phone:
        found.append(customer.phone.lstrip("+"))
        with contextlib.suppress(phonenumbers.NumberParseException):
            found.append(str(phonenumbers.parse(customer.phone).national_number))
    return found


def _mentions(value: str | None, identifiers: Iterable[str]) -> bool:
    return bool(value) and any(identifier in (value or "") for identifier in identifiers)


def _erase_order(session: Session, order: Order, now: datetime) -> None:
    order.shipping_address = {"country": order.shipping_address.get("country", "")}
    order.items = [{key: item[key] for key in KEPT_ITEM_FIELDS if key in item} for item in order.items]
    order.tracking_number = ""
    order.tracking_url = ""  # carriers' tracking pages show the recipient's name and address
    order.extra = {}
    order.updated_at = now
    session.add(order)


def _erase_order_events(session: Session, order_pks: list[int], order_ids: list[str]) -> list[str]:
    """Blank carrier notes and payloads; keep the logistics feed's shape. The feed's event ids."""
    if not order_pks:
        return []
    for event in session.exec(select(OrderEvent).where(col(OrderEvent.order_pk).in_(order_pks))):
        event.note = ""
        event.data = {}
        session.add(event)
    event_ids = []
    for feed_item in session.exec(select(LogisticsEvent).where(col(LogisticsEvent.order_id).in_(order_ids))):
        # Consumers page through the feed, so the item stays, without addresses or notes.
        feed_item.data = {"order_id": feed_item.order_id, "erased": True}
        session.add(feed_item)
        event_ids.append(feed_item.id)
    return event_ids


def _unidentified_from(session: Session, customer: Customer) -> list[Message]:
    """Inbound messages of this customer acknowledged but not identified yet (their sender is still in
    `message.sender`): a few seconds' worth at most, matched here rather than in backend-specific JSON SQL."""
    waiting = session.exec(select(Message).where(Message.direction == "in", col(Message.conversation_id).is_(None),
                                                 col(Message.sender).is_not(None)))
    return [m for m in waiting if (m.sender or {}).get("phone") in {customer.phone} - {None}
            or (m.sender or {}).get("telegram_chat_id") in {customer.telegram_chat_id} - {None}]


def _erase_message(session: Session, message: Message, identifiers: list[str]) -> None:
    message.text = ERASED_TEXT
    message.media_urls = []
    message.entities = []
    if _mentions(message.provider_message_id, identifiers):
        message.provider_message_id = None  # Telegram's "<chat id>:<message id>"
    if message.status in {"scheduled", "queued"}:
        message.status = "cancelled"
        message.error = ERASED_NOTE
    elif _mentions(message.error, identifiers):
        message.error = ERASED_NOTE  # providers quote the number in some errors
    session.add(message)


def _erase_outbox(session: Session, *, customer_id: int, message_ids: list[int], order_pks: list[int],
                  event_ids: list[str], identifiers: list[str], now: datetime) -> int:
    """Cancel the customer's unsent messages and notifications; blank payloads and provider ids.
    Logistics webhooks still go out (with the erased payload): consumers rely on the events."""
    rows = session.exec(select(Outbox).where(or_(
        col(Outbox.customer_id) == customer_id, col(Outbox.message_id).in_(message_ids or [-1]),
        col(Outbox.order_pk).in_(order_pks or [-1]), col(Outbox.event_id).in_(event_ids or [""]))))
    cancelled = 0
    for row in rows:
        if row.kind != "webhook" and row.status in {"pending", "sending"}:
            row.status = "cancelled"
            row.last_error = ERASED_NOTE
            cancelled += row.kind == "message"
        if row.kind == "message":
            row.payload = {}
        if _mentions(row.provider_id, identifiers):
            row.provider_id = None
        if _mentions(row.last_error, identifiers):
            row.last_error = ERASED_NOTE
        row.updated_at = now
        session.add(row)
    return cancelled


def _erase_escalations(session: Session, customer_id: int, now: datetime) -> None:
    escalations = list(session.exec(select(Escalation).where(Escalation.customer_id == customer_id)))
    for escalation in escalations:
        escalation.note = ""
        escalation.context = {}
        if escalation.status != "resolved":
            escalation.status = "resolved"
            escalation.resolved_at = now
            escalation.resolved_by = "erasure"
        session.add(escalation)
    escalation_ids = [e.id or 0 for e in escalations]
    # Agents' notes and call outcomes may quote the customer: their text goes, the record that work was done stays.
    for note in session.exec(select(EscalationNote).where(EscalationNote.customer_id == customer_id)):
        note.body = ""
        session.add(note)
    for link in session.exec(select(ChatwootLink).where(col(ChatwootLink.escalation_id).in_(escalation_ids or [-1]))):
        # Chatwoot keeps its own copy of the contact; the operator deletes it there (docs/privacy.md).
        link.chatwoot_contact_id = None
        link.chatwoot_conversation_id = None
        link.status = "resolved"
        link.updated_at = now
        session.add(link)


# ------------------------------------------------------------------ the database files


def purge_after_commit(session: Session) -> None:
    """Purge the freed storage once this session's transaction has committed (never before:
    the old row versions are only free once the new ones are durable)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    sa.event.listen(session, "after_commit", lambda _session: _after_erasure(engine), once=True)


def _after_erasure(engine: Engine) -> None:
    forget_parsed_numbers()  # the number parsed by this request, or by the customer's earlier messages
    purge_freed_storage(engine)


def purge_freed_storage(engine: Engine, tables: Iterable[str] = TOUCHED_TABLES) -> bool:
    """Make overwritten rows unreadable in the database files. True when it fully succeeded.

    SQLite: checkpoint the write-ahead log into the main file and truncate it (old page images
    live in `-wal` until then; `secure_delete` has already zeroed the freed cells). PostgreSQL:
    VACUUM the tables, which must run outside a transaction. Failure is logged, never raised:
    the erasure itself is committed; the next erasure or checkpoint finishes the job.
    """
    try:
        if engine.dialect.name == "sqlite":
            return _checkpoint_sqlite(engine)
        if engine.dialect.name == "postgresql":
            _vacuum_postgres(engine, tables)
        return True
    except Exception as exc:  # noqa: BLE001 (committed already; report, do not fail the request)
        log.warning("erasure committed, but purging freed storage failed: %s", exc.__class__.__name__)
        return False


def _checkpoint_sqlite(engine: Engine) -> bool:
    # A raw pooled connection outside any transaction: a checkpoint cannot run inside one. It waits
    # for readers still on old snapshots, then empties the log; writers queue meanwhile, so it waits
    # less long than the connection's usual busy timeout.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        try:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _frames, _copied = cursor.fetchone() or (1, 0, 0)
        finally:
            cursor.execute("PRAGMA busy_timeout=30000")  # bot.core.db's setting for every connection
            cursor.close()
    finally:
        connection.close()
    if busy:
        log.warning("erasure committed, but the write-ahead log is busy; erased data stays in it until "
                    "the next checkpoint")
    return not busy


def _vacuum_postgres(engine: Engine, tables: Iterable[str]) -> None:
    connection = engine.raw_connection()
    dbapi: Any = connection.dbapi_connection
    try:
        dbapi.autocommit = True  # VACUUM refuses to run inside a transaction block
        cursor = connection.cursor()
        cursor.execute("VACUUM " + ", ".join(f'"{name}"' for name in tables))
        cursor.close()
    finally:
        dbapi.autocommit = False
        connection.close()


def log_status(message: Message, now: datetime) -> str:
    """The message-log status: one of LOG_STATUSES."""
    if message.direction == "in":
        return "delivered"  # it reached us
    if message.status == "scheduled" and message.due_at is not None and message.due_at <= now:
        return "queued"  # due: the dispatcher will take it on its next pass
    if message.status == "read":
        return "delivered"
    return message.status if message.status in LOG_STATUSES else "queued"


def order_messages(*, session: Session, order: Order) -> list[Message]:
    """Every message about this order: those linked to it, plus the customer's own
    unlinked messages since the order was placed (their side of the conversation)."""
    linked = col(Message.order_pk) == order.id
    unlinked = (col(Message.customer_id) == order.customer_id) & col(Message.order_pk).is_(None) & (
        col(Message.created_at) >= order.created_at)
    return list(session.exec(select(Message).where(linked | unlinked).order_by(col(Message.created_at), col(Message.id))))


SALT_KEY = "erasure_salt"


def erasure_salt(session: Session) -> str:
    """The per-installation salt for erased phone hashes (kv), created on first use."""
    row = session.get(KeyValue, SALT_KEY)
    if row is None:
        row = KeyValue(key=SALT_KEY, value=secrets.token_hex(32))
        if not try_insert(session, row):
            row = session.get(KeyValue, SALT_KEY)
            assert row is not None
    return row.value
