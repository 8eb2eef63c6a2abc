"""Customers: erasure (`DELETE /api/customers/{phone}`), the consent ledger's export
(`GET /api/customers/{phone}/consent`) and the per-order message log (`GET /api/orders/{order_id}/messages`).

Responses never echo the phone number; erasure is idempotent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlmodel import select

from bot.core.errors import NotFound
from bot.core.models import Customer
from bot.core.phones import to_e164
from bot.store import consent
from bot.store.erasure import erase_customer, log_status, order_messages
from bot.store.orders import get_order
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep

router = APIRouter(tags=["customers"])


class ErasureOut(BaseModel):
    erased: bool
    already_erased: bool
    orders: int
    messages: int
    cancelled_messages: int


class MessageLogEntry(BaseModel):
    id: int
    direction: Literal["in", "out"]
    channel: str
    journey: str | None
    template: str | None
    text: str
    status: Literal["scheduled", "queued", "held", "sent", "delivered", "failed", "cancelled", "expired"]
    due_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    error: str | None
    # The send planner's decision for an outbound message: channel, form (session | template | none),
    # category, price, currency and the reason in words (bot.core.planner); null for inbound messages.
    plan: dict[str, Any] | None = None


class MessageLogOut(BaseModel):
    order_id: str
    messages: list[MessageLogEntry]


@router.delete("/api/customers/{phone}", response_model=ErasureOut,
               responses={404: {"description": "no customer with this phone"}, 422: {"description": "not a phone number"}})
def erase(phone: str, session: SessionDep, service: ServiceDep) -> ErasureOut:
    """Erase a customer's personal data (GDPR Art. 17); safe to repeat."""
    e164 = to_e164(phone, service.settings.default_country)  # InvalidPhone: 422 "phone: <reason>"
    report = erase_customer(session=session, phone=e164, now=service.now())
    if not report.found:
        raise NotFound("no customer with this phone number")
    return ErasureOut(**report.as_dict())


class ConsentEntry(BaseModel):
    channel: str
    consent: Literal["in", "out"]
    source: str
    detail: str
    at: datetime


class ConsentOut(BaseModel):
    opted_out_channels: list[str]
    email_status: str | None = None  # email's consent: None (deliverable), unsubscribed, bounced or complained
    events: list[ConsentEntry]


@router.get("/api/customers/{phone}/consent", response_model=ConsentOut,
            responses={404: {"description": "no customer with this phone"}, 422: {"description": "not a phone number"}})
def consent_export(phone: str, session: ReadSessionDep, service: ServiceDep) -> ConsentOut:
    """The customer's consent ledger: every opt-in and opt-out with its channel, source and time, oldest first."""
    e164 = to_e164(phone, service.settings.default_country)  # InvalidPhone: 422 "phone: <reason>"
    customer = session.exec(select(Customer).where(Customer.phone == e164)).first()
    if customer is None:
        raise NotFound("no customer with this phone number")
    return ConsentOut(opted_out_channels=list(customer.opted_out_channels), email_status=customer.email_status,
                      events=[ConsentEntry.model_validate(e) for e in consent.history(session, customer.id or 0)])


@router.get("/api/orders/{order_id}/messages", response_model=MessageLogOut)
def message_log(order_id: str, session: ReadSessionDep, service: ServiceDep) -> MessageLogOut:
    """Every message in and out about this order, oldest first, with its delivery status."""
    order = get_order(session=session, order_id=order_id)
    now = service.now()
    entries = []
    for message in order_messages(session=session, order=order):
        template = message.template
        journey = template.removeprefix("journey.") if template and template.startswith("journey.") else None
        if journey == "order_confirmed_cod":
            journey = "order_confirmed"
        entries.append(MessageLogEntry(
            id=message.id or 0, direction="in" if message.direction == "in" else "out", channel=message.channel,
            journey=journey, template=template, text=message.text,
            status=log_status(message, now),
            due_at=message.due_at, sent_at=message.sent_at, created_at=message.created_at,
            error=message.error, plan=message.plan,
        ))
    return MessageLogOut(order_id=order.order_id, messages=entries)
