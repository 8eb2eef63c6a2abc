"""Linking a Telegram chat to a customer: a deep-link token (`/start <token>`, matched on
`Customer.telegram_link_token`) or the user's own shared contact (matched on the phone number).

Row operations on the caller's session (they never commit). Processing runs them for an
acknowledged Telegram message before it identifies the sender, so the message lands in the
linked customer's conversation. A deep-link token never moves a customer who is already
linked to another chat. Never logs tokens or phone numbers.
"""

from __future__ import annotations

import logging

from sqlmodel import Session, select

from bot.core.models import Customer

log = logging.getLogger(__name__)


def link_chat(session: Session, customer: Customer, chat_id: str) -> None:
    """Attach `chat_id` to `customer`, detaching it from a placeholder customer that had it."""
    if customer.telegram_chat_id == chat_id:
        return
    for other in session.exec(select(Customer).where(Customer.telegram_chat_id == chat_id)).all():
        other.telegram_chat_id = None
        session.add(other)
    session.flush()
    customer.telegram_chat_id = chat_id
    session.add(customer)


def link_telegram_chat(session: Session, chat_id: str, *, link_token: str | None = None,
                       contact_phone: str | None = None) -> bool:
    """Link the chat from a deep-link token or the user's own contact (E.164); True if linked."""
    customer: Customer | None = None
    if link_token:
        customer = session.exec(select(Customer).where(Customer.telegram_link_token == link_token)).first()
        if customer is not None and customer.telegram_chat_id not in (None, chat_id):
            log.warning("telegram deep link for a customer linked to another chat: refused")
            customer = None
    elif contact_phone:
        customer = session.exec(select(Customer).where(Customer.phone == contact_phone)).first()
    if customer is None:
        return False
    link_chat(session, customer, chat_id)
    return True
