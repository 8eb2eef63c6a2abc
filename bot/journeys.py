"""Proactive journeys: order and shipment events become outbound messages.

Called by the API (and carrier webhooks) inside the same transaction that
stored the order or event, so a journey message is never lost or doubled.
Placeholder hooks for now; the journeys work fills them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from bot.models import Customer, Order, OrderEvent

if TYPE_CHECKING:
    from bot.service import Service


class Journeys:
    def __init__(self, service: Service) -> None:
        self.service = service

    def order_saved(self, *, session: Session, order: Order, customer: Customer, created: bool) -> None:
        """An order was created or updated through the API."""

    def order_event(self, *, session: Session, order: Order, customer: Customer, event: OrderEvent) -> None:
        """A new (not duplicate) shipment event was recorded."""
