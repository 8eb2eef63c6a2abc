"""Orders and customers: create/update (idempotent), shipment events, snapshots.

The only place that decides which order status may follow which. Functions
take the session explicitly and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.core.db import session_now, try_insert
from bot.core.errors import Conflict, NotFound
from bot.core.holdout import Assignment, assignment_of, encode_journeys
from bot.core.models import Customer, Order, OrderEvent
from bot.core.schemas import CustomerIn, CustomerOut, HoldoutOut, OrderEventIn, OrderIn, OrderOut
from bot.store import consent
from flows.address import address_needs_clarification
from flows.base import CustomerView, OrderView

log = logging.getLogger(__name__)

# Statuses after which nothing more happens to an order (no transit news, no COD question).
TERMINAL = frozenset({"delivered", "returned", "cancelled"})
# Which status each shipment event may follow. A repeated event is a no-op (dedupe).
ALLOWED_FROM: dict[str, set[str]] = {
    "confirmed": {"placed", "cancel_requested"},
    "packed": {"placed", "confirmed"},
    "shipped": {"placed", "confirmed", "packed", "delayed"},
    "out_for_delivery": {"placed", "confirmed", "packed", "shipped", "delayed", "failed_attempt"},
    "delayed": {"placed", "confirmed", "packed", "shipped", "delayed", "out_for_delivery", "failed_attempt"},
    "failed_attempt": {"shipped", "out_for_delivery", "delayed", "failed_attempt"},
    "delivered": {"placed", "confirmed", "packed", "shipped", "out_for_delivery", "delayed", "failed_attempt"},
    "returned": {"shipped", "out_for_delivery", "delayed", "failed_attempt", "delivered"},
    "cancelled": {"placed", "confirmed", "packed", "cancel_requested"},
}


# ---------------------------------------------------------------- customers


def get_or_create_customer(*, session: Session, phone: str | None = None, telegram_chat_id: str | None = None,
                           defaults: dict[str, Any] | None = None) -> tuple[Customer, bool]:
    """Find a customer by phone (E.164) or Telegram chat id, creating one if unknown."""
    customer = find_customer(session=session, phone=phone, telegram_chat_id=telegram_chat_id)
    if customer is not None:
        return customer, False
    customer = Customer(phone=phone, telegram_chat_id=telegram_chat_id, **(defaults or {}))
    customer.telegram_link_token = secrets.token_urlsafe(16)
    if not try_insert(session, customer):
        # Lost a race with another transaction creating the same customer.
        found = find_customer(session=session, phone=phone, telegram_chat_id=telegram_chat_id)
        if found is None:
            raise
        return found, False
    return customer, True


def find_customer(*, session: Session, phone: str | None = None, telegram_chat_id: str | None = None) -> Customer | None:
    if phone:
        found = session.exec(select(Customer).where(Customer.phone == phone)).first()
        if found is not None:
            return found
    if telegram_chat_id:
        return session.exec(select(Customer).where(Customer.telegram_chat_id == telegram_chat_id)).first()
    return None


def _apply_customer(session: Session, customer: Customer, data: CustomerIn) -> None:
    if data.name:
        customer.name = data.name
    if data.telegram_chat_id:
        customer.telegram_chat_id = data.telegram_chat_id
    customer.locale = data.locale if data.locale != "hi" else "hi-Latn"
    customer.channel = data.channel
    if data.email and (customer.email or "").casefold() != data.email.casefold():
        customer.email = data.email
        # A new address starts deliverable (the old one's bounce, complaint or unsubscribe was about that
        # address); in the consent ledger as the shop's change.
        consent.set_consent(session, customer, "email", opted_out=False, source="api", detail="new email address")


# ---------------------------------------------------------------- orders


def get_order(*, session: Session, order_id: str) -> Order:
    order = session.exec(select(Order).where(Order.order_id == order_id)).first()
    if order is None:
        raise NotFound(f"order {order_id!r} not found")
    return order


def upsert_order(*, session: Session, order_in: OrderIn, holdout: Assignment | None = None) -> tuple[Order, bool]:
    """Create the order, or update it in place when `order_id` exists (idempotent).

    Returns (order, created). Status, delivery choices and COD state are owned
    by events and conversations, so an update never resets them; nor is the
    holdout assignment (`holdout`, stored only when the order is created).
    """
    customer, _ = get_or_create_customer(session=session, phone=order_in.customer.phone,
                                         telegram_chat_id=order_in.customer.telegram_chat_id)
    _apply_customer(session, customer, order_in.customer)
    address = order_in.shipping_address.model_dump()
    fields: dict[str, Any] = {
        "items": [{**i.model_dump(mode="json", exclude_none=True)} for i in order_in.items],
        "currency": order_in.currency.upper(),
        "total": order_in.total,
        "payment_method": order_in.payment_method,
        "shipping_address": address,
        "promised_date": order_in.promised_date,
        "carrier": order_in.carrier,
        "tracking_number": order_in.tracking_number,
        "tracking_url": order_in.tracking_url,
    }
    existing = session.exec(select(Order).where(Order.order_id == order_in.order_id)).first()
    if existing is not None:
        if existing.customer_id != customer.id:
            raise Conflict(f"order {order_in.order_id!r} belongs to another customer")
        if existing.shipping_address != address and existing.address_status != "updated":
            existing.address_status = order_in.address_status or (
                "needs_clarification" if address_needs_clarification(address) else "ok")
        elif order_in.address_status:
            existing.address_status = order_in.address_status
        for key, value in fields.items():
            setattr(existing, key, value)
        session.add(existing)
        return existing, False
    order = Order(
        order_id=order_in.order_id,
        customer_id=customer.id,  # type: ignore[arg-type]
        status="placed",
        cod_status="pending" if order_in.payment_method == "cod" else None,
        address_status=order_in.address_status or ("needs_clarification" if address_needs_clarification(address) else "ok"),
        holdout_group=holdout.group if holdout else None,
        holdout_journeys=encode_journeys(holdout.journeys) if holdout else "",
        **fields,
    )
    if not try_insert(session, order):
        raise Conflict(f"order {order_in.order_id!r} was created concurrently; retry the request") from None
    return order, True


def apply_event(*, session: Session, order: Order, event_in: OrderEventIn, source: str = "api") -> tuple[OrderEvent, bool]:
    """Record a shipment event and move the order's status.

    Returns (event, duplicate). The same event (type + time) twice is a
    duplicate and changes nothing; an impossible transition raises Conflict.
    """
    at = event_in.at or session_now(session)
    dedupe_key = f"{event_in.type}@{at.astimezone(UTC).isoformat()}"
    existing = session.exec(
        select(OrderEvent).where(OrderEvent.order_pk == order.id, OrderEvent.dedupe_key == dedupe_key)
    ).first()
    if existing is not None:
        return existing, True
    if event_in.type != order.status or event_in.type == "delayed":
        allowed = ALLOWED_FROM[event_in.type]
        if order.status not in allowed:
            raise Conflict(f"order {order.order_id} is {order.status}; it cannot become {event_in.type}")
    event = OrderEvent(order_pk=order.id, type=event_in.type, at=at, eta=event_in.eta,  # type: ignore[arg-type]
                       note=event_in.note or "", source=source, dedupe_key=dedupe_key)
    try:
        # A savepoint: when an identical event raced us (same order, type and time), the unique
        # key refuses ours and the order is left exactly as the first one made it.
        with session.begin_nested():
            order.status = event_in.type
            if event_in.eta:
                order.eta = event_in.eta
            if event_in.type == "delivered":
                order.delivered_at = at
            if event_in.type == "cancelled" and order.cod_status == "pending":
                order.cod_status = "cancelled"
            session.add(order)
            session.add(event)
            session.flush()
    except IntegrityError:
        if event in session:
            session.expunge(event)
        session.refresh(order)
        raced = session.exec(
            select(OrderEvent).where(OrderEvent.order_pk == order.id, OrderEvent.dedupe_key == dedupe_key)
        ).first()
        if raced is None:
            raise
        return raced, True
    return event, False


def record_event(*, session: Session, order: Order, type_: str, note: str = "", source: str = "bot",
                 data: dict[str, Any] | None = None) -> OrderEvent:
    """An order event that is not a carrier status (reschedule, address update, COD answer)."""
    event = OrderEvent(order_pk=order.id, type=type_, at=session_now(session), note=note, source=source,  # type: ignore[arg-type]
                       data=data or {})
    session.add(event)
    return event


def customer_orders(*, session: Session, customer_id: int) -> list[Order]:
    return list(session.exec(select(Order).where(Order.customer_id == customer_id).order_by(col(Order.created_at).desc(), col(Order.id).desc())))


# ---------------------------------------------------------------- views


def order_view(order: Order) -> OrderView:
    return OrderView(
        order_id=order.order_id,
        status=order.status,
        items=tuple(order.items),
        currency=order.currency,
        total=_money(order.total),
        payment_method=order.payment_method,
        shipping_address=dict(order.shipping_address),
        promised_date=order.promised_date,
        delivery_date=order.delivery_date,
        delivery_window=order.delivery_window,
        cod_status=order.cod_status,
        address_status=order.address_status,
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        tracking_url=order.tracking_url,
        eta=order.eta,
        delivered_at=order.delivered_at,
        created_at=order.created_at,
    )


def customer_view(customer: Customer) -> CustomerView:
    return CustomerView(id=customer.id or 0, name=customer.name, locale=customer.locale, channel=customer.channel,
                        has_phone=bool(customer.phone))


def _money(value: Decimal | float | int | str) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


def order_public(order: Order, customer: Customer) -> OrderOut:
    return OrderOut(
        order_id=order.order_id,
        customer=CustomerOut(name=customer.name, phone=customer.phone, telegram_chat_id=customer.telegram_chat_id,
                             locale=customer.locale, channel=customer.channel, email=customer.email),
        items=order.items,
        currency=order.currency,
        total=_money(order.total),
        payment_method=order.payment_method,
        shipping_address=order.shipping_address,
        promised_date=order.promised_date,
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        tracking_url=order.tracking_url,
        status=order.status,
        delivery_date=order.delivery_date,
        delivery_window=order.delivery_window,
        cod_status=order.cod_status,
        address_status=order.address_status,
        eta=order.eta,
        created_at=order.created_at,
        updated_at=order.updated_at,
        holdout=holdout_public(order),
    )


def holdout_of(order: Order) -> Assignment:
    return assignment_of(order.holdout_group, order.holdout_journeys)


def holdout_public(order: Order) -> HoldoutOut:
    assignment = holdout_of(order)
    return HoldoutOut(group=assignment.group, journeys=assignment.journeys)


def today_in(tz: str, now: datetime) -> date:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(tz)).date()
