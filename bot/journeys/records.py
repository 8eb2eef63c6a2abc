"""Order records by email: the order confirmation, shipping update and receipt, with the full details.

A customer with a deliverable email address (`Customer.email`, `email_status` empty) gets these next to the
journey message on their chat channel (or as that message, when email is their preferred channel). What
the email shows is a snapshot of the order taken when the message is queued, kept in the outbox payload
(erasure blanks it), and rendered to HTML and plain text by the email channel
(`integrations/email_channel.py`) from `data/templates/email/`. This module only queues rows; it never
sends anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.core.models import Customer, Message, Order
from bot.core.settings import Settings
from bot.store import outbox
from bot.store.orders import order_public

# Journey -> the record it sends by email (other journeys on the email channel are plain updates).
RECORD_KINDS = {"order_confirmed": "order_confirmation", "shipped": "shipping_update", "delivered": "receipt"}
UNDELIVERABLE = {"unsubscribed", "bounced", "complained"}


def email_deliverable(customer: Customer, *, proactive: bool = True) -> bool:
    """Whether mail may go to the customer: an address, not bounced or complained, and (for anything
    the customer did not ask for) not unsubscribed."""
    if not customer.email or customer.erased_at is not None:
        return False
    blocked = UNDELIVERABLE if proactive else UNDELIVERABLE - {"unsubscribed"}
    return customer.email_status not in blocked


def email_context(journey: str, order: Order, customer: Customer, settings: Settings) -> dict[str, Any]:
    """What the email templates show: the order as the API returns it, without the customer's contact
    details (they are in the recipient field, not repeated in the payload)."""
    snapshot = order_public(order, customer).model_dump(mode="json", exclude={"customer"})
    viber = settings.viber
    viber_link = (f"viber://pa?chatURI={viber.chat_uri}&context={customer.telegram_link_token}"
                  if viber.configured and viber.chat_uri and customer.telegram_link_token
                  and not customer.viber_user_id else "")
    return {"kind": RECORD_KINDS.get(journey, "update"), "order": snapshot,
            "customer_name": customer.name.split(" ")[0] if customer.name else "", "viber_link": viber_link}


def queue_email_record(session: Session, *, settings: Settings, journey: str, order: Order, customer: Customer,
                       text: str, conversation_id: int | None, dedupe_key: str, now: datetime) -> Message | None:
    """Queue the email record of a journey message that went to another channel (at once: a record is
    not a nudge, quiet hours do not hold it). None when there is no record for this journey or no
    deliverable address."""
    kind = RECORD_KINDS.get(journey)
    if kind is None or not settings.email.configured or not settings.email.records or not email_deliverable(customer):
        return None
    return outbox.enqueue_message(
        session=session, customer=customer, channel="email", text=text, conversation_id=conversation_id,
        order_pk=order.id, template=f"email.{kind}", dedupe_key=f"{dedupe_key}:email",
        priority=outbox.PRIORITY_TRANSACTIONAL,
        payload={"journey": journey, "email": email_context(journey, order, customer, settings)}, now=now,
    )
