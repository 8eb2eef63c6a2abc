"""Proactive journeys: order and shipment events become timely, well-placed messages.

Called by the orders API, the demo loader and carrier webhooks inside the same
transaction that stored the order or event, so a journey message is never
lost or doubled. Every message goes through one contact policy (`plan`):

* the customer's preferred channel (Telegram only once linked, else SMS);
* nothing proactive for an opted-out or erased customer;
* quiet hours in the customer's timezone move a message to the next allowed
  time (a scheduled outbox row), never drop it; a customer who wrote in the
  last half hour is awake, so nothing is held;
* frequency caps per order per day and for marketing per customer per week
  (a capped message is logged as `cancelled` with the reason);
* priority: transactional before marketing (the dispatcher orders by it);
* dedupe: the outbox `dedupe_key` is derived from the event, so the same
  event twice gives one message;
* obsolescence: a later event cancels pending messages it supersedes
  (outbox row and message both `cancelled`), and nothing about transit is
  said once the order is delivered.

Steps that must be decided when they fall due (COD reminder and escalation,
the NPS survey) are `JourneyTimer` rows, claimed by the per-second tick
(`run_due_timers`) with `FOR UPDATE SKIP LOCKED`. This module never sends
anything itself; the dispatcher does, after commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.core.models import Customer, Message, Order, OrderEvent
from bot.core.phones import phone_hash
from bot.core.shopconfig import parse_duration
from bot.core.vocab import (
    SUPERSEDES,
    TIMERS_SUPERSEDED,
    TRANSIT_JOURNEYS,
)
from bot.journeys.timers import JourneyTimers
from bot.store import consent, conversations, outbox
from bot.store.erasure import erasure_salt
from bot.store.orders import ALLOWED_FROM, TERMINAL, holdout_of
from flows.proactive import NotApplicable


class Journeys(JourneyTimers):
    """The hooks the orders API calls (`order_saved`, `order_event`), on top of the contact policy
    (`bot.journeys.policy`) and the timers (`bot.journeys.timers`)."""

    # ------------------------------------------------------------ hooks

    def order_saved(self, *, session: Session, order: Order, customer: Customer, created: bool) -> None:
        """An order was created or updated through the API: the order-confirmed journey."""
        if not created:
            return
        self._inherit_erased_opt_out(session, customer)
        self._order_confirmed(session, order, customer, key="created")
        self.ask_address_clarification(session, order, customer)

    def order_event(self, *, session: Session, order: Order, customer: Customer, event: OrderEvent) -> None:
        """A new (not duplicate) shipment event was recorded."""
        now = self.runtime.now()
        kind = event.type
        outbox.cancel_superseded(session, order=order, journeys=SUPERSEDES.get(kind, ()),
                               timers=TIMERS_SUPERSEDED.get(kind, ()), reason=f"superseded by {kind}", now=now)
        if kind == "confirmed":
            self._order_confirmed(session, order, customer, key="created")
            return
        if kind in TRANSIT_JOURNEYS and (order.delivered_at is not None or order.status in TERMINAL):
            return  # obsolete: never "delayed" after "delivered"
        if kind not in (*TRANSIT_JOURNEYS, "delivered"):
            return
        if self._repeats(session, order, event):
            return  # the carrier said the same thing again: nothing new to tell the customer
        valid_for = parse_duration(self.spec(kind).get("valid_for", "24h"))
        if event.at + valid_for < now:
            return  # a stale event (replayed late): telling the customer now would mislead
        planned = self.plan(session, journey=kind, order=order, customer=customer,
                            dedupe_key=f"journey:{kind}:{order.id}:{event.dedupe_key or event.id}", now=now)
        if kind == "failed_attempt" and planned.message is not None and planned.decision != "capped":
            self.add_call_timer(session, journey=kind, order=order, customer=customer, asked_at=planned.due_at or now)
        if kind == "delivered":
            self._after_delivery(session, order, customer, now)

    @staticmethod
    def _repeats(session: Session, order: Order, event: OrderEvent) -> bool:
        """Whether the status just before this one was the same: nothing new to tell.

        "shipped" scanned twice is a repeat; out for delivery again after a failed attempt is
        news; a delay is news only with a new ETA (none, or the same one, is a repeat)."""
        previous = session.exec(
            select(OrderEvent).where(OrderEvent.order_pk == order.id, OrderEvent.id != event.id,
                                     col(OrderEvent.type).in_(tuple(ALLOWED_FROM)), col(OrderEvent.at) <= event.at)
            .order_by(col(OrderEvent.at).desc(), col(OrderEvent.id).desc()).limit(1)
        ).first()
        if previous is None or previous.type != event.type:
            return False
        return event.type != "delayed" or event.eta is None or event.eta == previous.eta

    # ------------------------------------------------------------ journeys

    def _order_confirmed(self, session: Session, order: Order, customer: Customer, *, key: str) -> None:
        now = self.runtime.now()
        asks_cod = order.payment_method == "cod" and order.cod_status == "pending"
        planned = self.plan(session, journey="order_confirmed", order=order, customer=customer,
                            dedupe_key=f"journey:order_confirmed:{order.id}", now=now,
                            opens_flow="cod" if asks_cod else None)
        if order.payment_method != "cod" or order.cod_status != "pending" or planned.message is None:
            return
        self.open_flow(session, customer, "cod", order=order, now=now)
        asked_at = planned.due_at or now  # counted from when the question actually goes out (quiet hours)
        for kind in ("cod_reminder", "cod_escalation"):
            if self.enabled(kind):
                due = asked_at + parse_duration(self.spec(kind).get("delay", "2h"))
                self.add_timer(session, kind=kind, order=order, customer=customer, due_at=due,
                               quiet=kind != "cod_escalation")  # agents, not customers, get the escalation

    def ask_address_clarification(self, session: Session, order: Order, customer: Customer) -> Message | None:
        """Ask for the missing parts of an address that cannot be delivered as it is.

        One open question at a time: while a COD confirmation is pending, that
        question goes first and this one follows the customer's answer
        (`bot.conversation.engine` calls back here). Honours the journey's `enabled`, opt-out, quiet
        hours, its `valid_for` expiry and dedupe. Returns the queued question, None when not asked.
        """
        if order.address_status != "needs_clarification" or not self.enabled("address_clarification"):
            return None
        if holdout_of(order).holds_out("address_clarification"):
            return None
        if order.payment_method == "cod" and order.cod_status == "pending":
            return None
        if customer.erased_at is not None or customer.opted_out_channels:
            return None
        now = self.runtime.now()
        spec = self.spec("address_clarification")
        due = self.next_allowed(now, customer)
        try:
            message = conversations.open_proactive(
                session=session, runtime=self.runtime, customer=customer, kind="address_clarification",
                order=order, now=now, due_at=due, expires_at=due + parse_duration(spec.get("valid_for", "24h")),
                dedupe_key=f"journey:address_clarification:{order.id}",
            )
        except NotApplicable:
            return None
        if message is not None:
            self.add_call_timer(session, journey="address_clarification", order=order, customer=customer,
                                asked_at=message.due_at or now)
        return message

    def _after_delivery(self, session: Session, order: Order, customer: Customer, now: datetime) -> None:
        if self.enabled("feedback"):
            due = now + parse_duration(self.spec("feedback").get("delay", "3d"))
            self.add_timer(session, kind="feedback", order=order, customer=customer, due_at=due)
        if self.enabled("reorder"):
            for item in order.items:
                days = item.get("consumable_days")
                if not days:
                    continue
                self.plan(session, journey="reorder", order=order, customer=customer,
                          dedupe_key=f"journey:reorder:{order.id}:{item.get('sku')}", now=now,
                          delay=timedelta(days=int(days)), extra_vars={"item": item})

    def _inherit_erased_opt_out(self, session: Session, customer: Customer) -> None:
        """A number that opted out and was then erased stays opted out when it orders again
        (only for a customer with no conversation yet, so a later START still works)."""
        if not customer.phone or customer.opted_out_channels:
            return
        if session.exec(select(Message.id).where(Message.customer_id == customer.id).limit(1)).first():
            return
        digest = phone_hash(customer.phone, erasure_salt(session))
        for erased in session.exec(select(Customer).where(Customer.phone_hash == digest,
                                                          col(Customer.erased_at).is_not(None))):
            if erased.opted_out_channels:
                for channel in sorted(set(erased.opted_out_channels)):
                    consent.set_consent(session, customer, channel, opted_out=True, source="import",
                                        detail="opted out before an erasure")
                return


