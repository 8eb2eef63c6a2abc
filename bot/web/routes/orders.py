"""Orders: create/update (idempotent on order_id), read, shipment events.

Unknown orders (404) and refused changes (409) are answered by bot.web.errors.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from bot.core.models import Customer
from bot.core.schemas import OrderEventIn, OrderEventOut, OrderIn, OrderOut
from bot.store.orders import get_order, order_public
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.post("", response_model=OrderOut, responses={200: {"description": "updated"}, 201: {"description": "created"}})
def create_or_update_order(order_in: OrderIn, session: SessionDep, service: ServiceDep, response: Response) -> OrderOut:
    saved = service.save_order(session, order_in)
    response.status_code = status.HTTP_201_CREATED if saved.created else status.HTTP_200_OK
    return order_public(saved.order, saved.customer)


@router.get("/{order_id}", response_model=OrderOut)
def read_order(order_id: str, session: ReadSessionDep) -> OrderOut:
    order = get_order(session=session, order_id=order_id)
    customer = session.get(Customer, order.customer_id)
    assert customer is not None
    return order_public(order, customer)


@router.post("/{order_id}/events", response_model=OrderEventOut, status_code=status.HTTP_201_CREATED)
def add_order_event(order_id: str, event_in: OrderEventIn, session: SessionDep, service: ServiceDep,
                    response: Response) -> OrderEventOut:
    order = get_order(session=session, order_id=order_id)
    recorded = service.record_order_event(session, order, event_in)
    if recorded.duplicate:
        response.status_code = status.HTTP_200_OK
    event = recorded.event
    return OrderEventOut(order_id=order.order_id, type=event.type, at=event.at, status=order.status,
                         duplicate=recorded.duplicate)
