"""Journey timers: steps decided when they fall due (COD reminder and escalation, the NPS survey).

`JourneyTimer` rows, claimed by the per-second tick (`run_due_timers`) with `FOR UPDATE SKIP LOCKED`, so
several workers share them; each is decided and marked in one transaction.
"""


from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.core.db import try_insert
from bot.core.models import Customer, JourneyTimer, Message, Order, Outbox
from bot.core.shopconfig import parse_duration
from bot.journeys.policy import FEEDBACK_FLOW, ContactPolicy
from bot.store import escalations
from bot.store.orders import TERMINAL

CALL_TIMERS = ("call_failed_attempt", "call_address_clarification")  # voice calls for unanswered questions


class JourneyTimers(ContactPolicy):
    """The contact policy plus the timers that wait for their moment."""

    # ------------------------------------------------------------ timers

    def add_timer(self, session: Session, *, kind: str, order: Order, customer: Customer, due_at: datetime,
                  quiet: bool = True) -> JourneyTimer | None:
        if quiet:
            due_at = self.next_allowed(due_at, customer)
        timer = JourneyTimer(kind=kind, order_pk=order.id, customer_id=customer.id,  # type: ignore[arg-type]
                             due_at=due_at, dedupe_key=f"timer:{kind}:{order.id}", created_at=self.runtime.now())
        return timer if try_insert(session, timer) else None

    def add_call_timer(self, session: Session, *, journey: str, order: Order, customer: Customer,
                       asked_at: datetime) -> JourneyTimer | None:
        """With voice calls on: call about `journey`'s question if the customer has not answered it
        within DOORSTEP_VOICE_CALL_AFTER of its going out (decided when the timer fires)."""
        if not self.settings.voice_calls:
            return None
        due = asked_at + parse_duration(self.settings.voice_call_after)
        return self.add_timer(session, kind=f"call_{journey}", order=order, customer=customer, due_at=due)

    def run_due_timers(self, *, limit: int = 100) -> int:
        """Fire due timers (the per-second tick). Each is decided and marked in one
        transaction; SKIP LOCKED lets several workers share the table."""
        db = self.db
        now = self.runtime.now()
        fired = 0
        with db.session() as session:
            timers = session.exec(
                select(JourneyTimer).where(JourneyTimer.status == "pending", col(JourneyTimer.due_at) <= now)
                .order_by(col(JourneyTimer.due_at), col(JourneyTimer.id)).limit(limit)
                .with_for_update(**db.skip_locked())
            ).all()
            for timer in timers:
                outcome = self._fire(session, timer, now)
                timer.status = "done" if outcome.startswith("sent") or outcome.startswith("escalated") else "skipped"
                timer.outcome = outcome[:200]
                timer.fired_at = now
                session.add(timer)
                fired += 1
        return fired

    def _fire(self, session: Session, timer: JourneyTimer, now: datetime) -> str:
        order = session.get(Order, timer.order_pk)
        customer = session.get(Customer, timer.customer_id)
        if order is None or customer is None:
            return "skipped: order gone"
        if timer.kind == "cod_reminder":
            if order.cod_status != "pending" or order.status in TERMINAL:
                return f"skipped: COD is {order.cod_status}"
            call = self.plan_call(session, journey="cod_reminder", order=order, customer=customer, now=now)
            if call.message is not None:  # the text got no answer in time: a call asks instead
                self.open_flow(session, customer, "cod", order=order, now=now)
                return f"sent: call {call.decision}"
            planned = self.plan(session, journey="cod_reminder", order=order, customer=customer,
                                dedupe_key=f"journey:cod_reminder:{order.id}", now=now,
                                delay=timedelta(0), opens_flow="cod")  # the timer already waited
            if planned.message is not None and planned.decision != "capped":
                self.open_flow(session, customer, "cod", order=order, now=now)
            return f"sent: {planned.decision}" if planned.message else f"skipped: {planned.decision}"
        if timer.kind == "cod_escalation":
            if order.cod_status != "pending" or order.status in TERMINAL:
                return f"skipped: COD is {order.cod_status}"
            conversation = self.conversation(session, customer, customer.channel)
            session.flush()
            self.db.lock_row(session, "conversation", conversation.id or 0)
            escalations.create_escalation(
                session=session, conversation=conversation, customer=customer, order=order, reason="needs_call",
                note="Cash-on-delivery order not confirmed: please call the customer.", now=now,
                sla_minutes=int(self.config.get("escalation", {}).get("sla_minutes", 30)),
                actions=["cod_confirmation_requested"],
            )
            return "escalated: needs_call"
        if timer.kind == "feedback":
            if order.status != "delivered":
                return f"skipped: order is {order.status}"
            planned = self.plan(session, journey="feedback", order=order, customer=customer,
                                dedupe_key=f"journey:feedback:{order.id}", now=now,
                                delay=timedelta(0), opens_flow=FEEDBACK_FLOW)  # the timer already waited
            if planned.message is not None and planned.decision != "capped":
                self.open_flow(session, customer, FEEDBACK_FLOW, order=order, now=now)
            return f"sent: {planned.decision}" if planned.message and planned.decision != "capped" else f"skipped: {planned.decision}"
        if timer.kind in CALL_TIMERS:
            return self._call_if_unanswered(session, timer, order, customer, now)
        return f"skipped: unknown timer {timer.kind}"

    def _call_if_unanswered(self, session: Session, timer: JourneyTimer, order: Order, customer: Customer,
                            now: datetime) -> str:
        journey = timer.kind.removeprefix("call_")
        if order.status in TERMINAL or order.delivered_at is not None:
            return f"skipped: order is {order.status}"
        if journey == "failed_attempt" and order.status != "failed_attempt":
            return f"skipped: order is {order.status}"
        if journey == "address_clarification" and order.address_status != "needs_clarification":
            return f"skipped: address is {order.address_status}"
        conversation = self.conversation(session, customer, customer.channel)
        if conversation.last_inbound_at is not None and conversation.last_inbound_at >= timer.created_at:
            return "skipped: the customer answered"
        question = None
        if journey == "address_clarification":  # the flow wrote that question: the text after the call repeats it
            question = session.exec(select(Message).join(Outbox, col(Outbox.message_id) == Message.id).where(
                Outbox.dedupe_key == f"journey:address_clarification:{order.id}")).first()
        planned = self.plan_call(session, journey=journey, order=order, customer=customer, now=now, followup=question)
        return f"sent: call {planned.decision}" if planned.message else f"skipped: {planned.decision}"
