"""Erasure of one customer's personal data (GDPR Art. 17) and the per-order message log.

`erase_customer` blanks name, phone, Telegram id, addresses and message texts
across orders, order events, conversations, messages, escalations, logistics
event payloads and the outbox; cancels the customer's scheduled and pending
messages and journey timers; and keeps only a salted hash of the phone
(`Customer.phone_hash`, salt in kv) so an opted-out number stays opted out.
Idempotent. It runs in the caller's transaction and never logs the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from bot.journeys import erasure_salt
from bot.models import (
    Conversation,
    Customer,
    Escalation,
    JourneyTimer,
    LogisticsEvent,
    Message,
    Order,
    OrderEvent,
    Outbox,
)
from bot.phones import phone_hash

ERASED_TEXT = ""
LOG_STATUSES = ("scheduled", "queued", "sent", "delivered", "failed", "cancelled", "expired")


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
    """Erase the customer with this E.164 phone. Unknown and never-erased -> found=False."""
    digest = phone_hash(phone, erasure_salt(session))
    customer = session.exec(select(Customer).where(Customer.phone == phone)).first()
    if customer is None:
        erased = session.exec(select(Customer.id).where(Customer.phone_hash == digest,
                                                        col(Customer.erased_at).is_not(None))).first()
        return ErasureReport(found=erased is not None, already_erased=erased is not None)
    customer_id = customer.id

    orders = list(session.exec(select(Order).where(Order.customer_id == customer_id)))
    order_pks = [o.id for o in orders]
    for order in orders:
        order.shipping_address = {"country": order.shipping_address.get("country", "")}
        order.extra = {}
        order.updated_at = now
        session.add(order)
    if order_pks:
        for event in session.exec(select(OrderEvent).where(col(OrderEvent.order_pk).in_(order_pks))):
            event.note = ""
            event.data = {}
            session.add(event)
        order_ids = [o.order_id for o in orders]
        for feed_item in session.exec(select(LogisticsEvent).where(col(LogisticsEvent.order_id).in_(order_ids))):
            # Keep the feed's shape (consumers page through it) but not addresses or notes.
            feed_item.data = {"order_id": feed_item.order_id, "erased": True}
            session.add(feed_item)

    cancelled = 0
    messages = list(session.exec(select(Message).where(Message.customer_id == customer_id)))
    message_ids = [m.id for m in messages]
    outbox_rows = list(session.exec(select(Outbox).where(
        or_(col(Outbox.customer_id) == customer_id, col(Outbox.message_id).in_(message_ids or [-1])))))
    for row in outbox_rows:
        if row.status in {"pending", "sending"} and row.kind == "message":
            row.status = "cancelled"
            row.last_error = "customer erased"
            cancelled += 1
        if row.kind == "message":
            row.payload = {}
        row.updated_at = now
        session.add(row)
    for message in messages:
        message.text = ERASED_TEXT
        message.media_urls = []
        message.entities = []
        if message.status in {"scheduled", "queued"}:
            message.status = "cancelled"
            message.error = "customer erased"
        session.add(message)
    for timer in session.exec(select(JourneyTimer).where(JourneyTimer.customer_id == customer_id,
                                                         JourneyTimer.status == "pending")):
        timer.status = "cancelled"
        timer.outcome = "customer erased"
        session.add(timer)
    for conversation in session.exec(select(Conversation).where(Conversation.customer_id == customer_id)):
        conversation.slots = {}
        conversation.flow = None
        conversation.state = ""
        conversation.expires_at = None
        session.add(conversation)
    for escalation in session.exec(select(Escalation).where(Escalation.customer_id == customer_id)):
        escalation.note = ""
        escalation.context = {}
        session.add(escalation)

    customer.name = ""
    customer.phone = None
    customer.telegram_chat_id = None
    customer.telegram_link_token = None
    customer.timezone = None
    customer.phone_hash = digest
    customer.erased_at = now
    customer.updated_at = now
    session.add(customer)
    return ErasureReport(found=True, already_erased=False, orders=len(orders), messages=len(messages),
                         cancelled=cancelled)


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
