"""The dispatcher: sends committed outbox rows, with retries, rate limits and one failure policy.

Claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer) by moving them to `sending` with a lease, sends them outside any
transaction, and records the outcome (and the provider's id) at once.

No double sends. A row is only sent by the worker holding its lease. A row
whose lease expired while `sending` (the worker crashed after claiming it)
is reclaimed; if its sender can reconcile (Twilio: list the messages sent to
that number since the claim and match the text, skipping every provider id
already recorded for another row, so it can only match the one message this
row sent: one customer has at most one message in flight), the provider is
asked first, so the ordinary crash does not send twice. The window that remains: a crash
after the provider accepted a message and before `record` committed, on a
channel that cannot reconcile (Telegram), or a Twilio template message, sends
it once more after the lease (60 s) expires.

Rate limits, shared by every process on the database (bot.delivery.ratelimits):
Telegram 30 messages/s in all and 1/s per chat; Twilio `TWILIO_SMS_RATE_PER_SECOND`
/ `TWILIO_WHATSAPP_RATE_PER_SECOND` per sender; WhatsApp's per-recipient pacing.
A message whose slot is more than `MAX_INLINE_WAIT` away is put back with a
later `due_at` instead of holding its lease. New rows wake the dispatchers of
other processes by PostgreSQL NOTIFY (bot.delivery.wakeup), with polling as the fallback.

One customer's messages go out in the order they were queued (by
`first_due_at`, which retries never move): a message row is not claimed while
an earlier one of the same customer is still pending (waiting for its next
try after a provider error) or being sent, and within one batch a customer's
messages are sent one after another, the rest put back as soon as one has to
wait. The SQL filter keeps blocked rows out of the batch; a second check in
the same transaction drops a row whose earlier sibling was skipped (locked by
another worker, or beyond the batch limit), so two workers never send one
customer's messages out of order.

Retries are time-based for messages: a message is retried (backoff capped at
a minute for replies, five minutes otherwise) until it expires — replies are
valid for `bot.store.outbox.REPLY_VALID_FOR`, journeys for their `valid_for` — and
is then closed as `expired` (obsolete, with the reason in the message log),
never sent late; a message without a validity is dead-lettered after
`MESSAGE_RETRY_HORIZON`. Other kinds (webhooks, notifications) keep their
attempt limits.

Before sending: an expired row (`expires_at`, the ValidityPeriod) becomes
`expired`; a proactive message (priority above replies) to a customer who
opted out of that channel becomes `cancelled`; an automatic message to a
customer whose conversation a person owns becomes `held` (bot.store.holds). WhatsApp
rows carry whether the 24-hour window is open; `WindowClosed` falls back to
SMS.

`outcome_for` is the one place that maps delivery errors to retry, fallback
or failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, exists, not_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, or_, select

from bot.core.channels import OutboundMessage, Receipt, Sender
from bot.core.clock import Clock, system_clock
from bot.core.db import Database
from bot.core.errors import DeliveryError
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery import senders, wakeup
from bot.delivery.outcomes import BACKOFF_CAP_SECONDS, Outcome, fallback_channel, outcome_for
from bot.delivery.ratelimits import RateLimiter, Slot, channel_limits
from bot.store import holds, outbox
from bot.store.outbox import PRIORITY_REPLY

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Messages: a reply goes out within a minute of the provider's recovery; others within five.
REPLY_BACKOFF_CAP_SECONDS = 60.0
MESSAGE_BACKOFF_CAP_SECONDS = 300.0
MESSAGE_RETRY_HORIZON = timedelta(hours=24)  # a message without its own validity is retried this long
UNFINISHED = ("pending", "sending")
# A message outcome after which the customer's next message may go: anything else keeps them waiting.
FINAL = {"sent", "failed", "dead", "expired"}
MAX_INLINE_WAIT = 2.0  # seconds a rate-limited message may wait while holding its lease
OUTBOX: sa.Table = Outbox.__table__  # type: ignore[attr-defined]
MESSAGE: sa.Table = Message.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Claimed:
    row_id: int
    kind: str
    channel: str | None
    reclaimed: bool
    message: OutboundMessage | None
    payload: dict[str, Any]
    event_id: str | None
    attempts: int
    max_attempts: int
    customer_id: int | None = None
    order_key: tuple[datetime, int] | None = None  # one customer's sending order
    retry_until: datetime | None = None  # time-based retries (messages); None = attempt limit
    give_up_as: str = "dead"  # expired (past its validity: obsolete) | dead
    backoff_cap: float = BACKOFF_CAP_SECONDS


# ---------------------------------------------------------------- wake-up

_wake_lock = threading.Lock()
_wake_events: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


def notify(db: Database | None = None) -> None:
    """Wake every dispatcher of this process now (called after new outbox rows commit), and with `db`
    (PostgreSQL) those of other processes too."""
    if db is not None:
        wakeup.announce(db)
    with _wake_lock:
        targets = list(_wake_events)
    for loop, event in targets:
        if not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


class Dispatcher:
    def __init__(self, db: Database, settings: Settings, *, clock: Clock = system_clock,
                 senders: dict[str, Sender] | None = None, worker_id: str | None = None,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._senders: dict[str, Sender] = dict(senders or {})
        self.worker_id = (worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}")[:64]
        self.kinds = kinds
        self.limiter = RateLimiter(db, max_wait=MAX_INLINE_WAIT)

    # ------------------------------------------------------------ senders

    def sender_for(self, key: str) -> Sender | None:
        if key not in self._senders:
            factory = senders.factory_for(key)
            if factory is None:
                return None
            self._senders[key] = factory(self.settings)
        return self._senders[key]

    @staticmethod
    def sender_key(claimed: Claimed) -> str:
        return f"message:{claimed.channel}" if claimed.kind == "message" else claimed.kind

    # ------------------------------------------------------------ claiming

    def claim(self, limit: int = 50) -> list[Claimed]:
        now = self.clock()
        claimed: list[Claimed] = []
        with self.db.session() as session:
            # The row's message and customer come with it (one query, not two loads per row); only
            # the outbox rows are locked (PostgreSQL refuses FOR UPDATE on an outer join's nullable side).
            query = (
                select(Outbox, Message, Customer)
                .outerjoin(Message, col(Message.id) == col(Outbox.message_id))
                .outerjoin(Customer, col(Customer.id) == col(Outbox.customer_id))
                .where(or_(
                    (col(Outbox.status) == "pending") & (col(Outbox.due_at) <= now),
                    (col(Outbox.status) == "sending") & (col(Outbox.claimed_until) < now),
                ))
                .where(or_(col(Outbox.kind) != "message", col(Outbox.customer_id).is_(None),
                           not_(_waits_behind_an_earlier_message(now))))
                .order_by(col(Outbox.priority), col(Outbox.due_at), col(Outbox.id))
                .limit(limit)
                .with_for_update(of=Outbox, **self.db.skip_locked())
            )
            if self.kinds:
                query = query.where(col(Outbox.kind).in_(self.kinds))
            batch = _in_recipient_order(session, [tuple(r) for r in session.exec(query).all()])  # type: ignore[misc]
            human_owned = holds.human_owned(session, {row.customer_id for row, _, _ in batch
                                                      if row.customer_id is not None and holds.is_automatic(row)})
            for row, message, customer in batch:
                reclaimed = row.status == "sending"
                previous_claim = (row.claimed_until - LEASE) if reclaimed and row.claimed_until else None
                if row.expires_at is not None and row.expires_at <= now:
                    reason = "obsolete: expired before it could be sent"
                    if row.attempts and row.last_error:
                        reason = f"obsolete: not delivered in time after {row.attempts} attempts ({row.last_error})"
                    outbox.set_status(session, row, message, "expired", reason=reason, now=now)
                    continue
                if (message is not None and customer is not None and row.priority > PRIORITY_REPLY
                        and message.channel in customer.opted_out_channels):
                    # Proactive message to someone who opted out of this channel: never send it.
                    outbox.set_status(session, row, message, "cancelled", reason="recipient opted out", now=now)
                    continue
                if not reclaimed and holds.is_automatic(row) and row.customer_id in human_owned:
                    holds.hold(session, row, message, now)
                    continue
                row.status = "sending"
                row.attempts += 1
                row.claimed_by = self.worker_id
                row.claimed_until = now + LEASE
                row.updated_at = now
                session.add(row)
                outbound = None
                if message is not None:
                    payload = dict(row.payload)
                    if row.expires_at is not None:
                        # Twilio's ValidityPeriod: what is left of the message's useful life, by our clock.
                        payload["validity_seconds"] = max(1, int((row.expires_at - now).total_seconds()))
                    if previous_claim is not None:
                        payload["claimed_since"] = previous_claim.isoformat()
                    if message.channel == "whatsapp":
                        payload["whatsapp_window_open"] = outbox.whatsapp_window_open(session, message.customer_id, now)
                    outbound = OutboundMessage(
                        outbox_id=row.id or 0, message_id=message.id, channel=message.channel,
                        to=_address(customer, message.channel), text=message.text,
                        kind=str(row.payload.get("template") or "reply"),
                        buttons=tuple((str(b[0]), str(b[1])) for b in row.payload.get("buttons", [])),
                        payload=payload, attempt=row.attempts,
                    )
                claimed.append(Claimed(row.id or 0, row.kind, message.channel if message else row.channel, reclaimed,
                                       outbound, dict(row.payload), row.event_id, row.attempts, row.max_attempts,
                                       **_message_policy(row)))
        return claimed

    def claim_once(self, limit: int = 50) -> list[Claimed]:
        """`claim`, run once more if the connection was found dead (nothing of it committed)."""
        return self.db.retry_on_disconnect(lambda: self.claim(limit), what="claim")

    # ------------------------------------------------------------ sending

    async def deliver(self, claimed: Claimed) -> Outcome:
        sender = self.sender_for(self.sender_key(claimed))
        if sender is None:
            outcome = Outcome("failed", error=f"no sender for {self.sender_key(claimed)} (channel not configured)")
            await asyncio.to_thread(self.record, claimed, outcome, None)
            return outcome
        limits = channel_limits(self.settings, claimed.channel, claimed.message.to if claimed.message else "")
        slot: Slot | None = None
        if limits:
            prepare = getattr(sender, "prepare", None)
            if prepare is not None:
                await prepare()  # first-use work (imports, the client) before the slot, not inside it
            slot = await self.limiter.acquire(limits)
            if slot.granted:
                await asyncio.sleep(max(0.0, slot.at - self.limiter.clock()))
            if not slot.granted or slot.late(self.limiter.clock()):
                # No slot within MAX_INLINE_WAIT (or the loop was too slow to keep it): put back, not an attempt.
                outcome = Outcome("deferred", retry_in=max(0.0, slot.at - self.limiter.clock()) if not slot.granted else 0.0)
                await asyncio.to_thread(self.record, claimed, outcome, None)
                return outcome
        receipt: Receipt | None = None
        try:
            if claimed.reclaimed and claimed.message is not None and hasattr(sender, "reconcile"):
                # Read now, not at claim: an earlier message of this lane may have been recorded since.
                taken = await asyncio.to_thread(self.provider_ids_taken, claimed)
                asked = dataclasses.replace(claimed.message,
                                            payload={**claimed.message.payload, "taken_provider_ids": sorted(taken)})
                receipt = await sender.reconcile(asked)
            if receipt is None:
                receipt = await sender.send(claimed.message if claimed.message is not None else claimed)  # type: ignore[arg-type]
            outcome = Outcome("sent")
        except Exception as exc:  # every failure is mapped; nothing escapes the loop
            if not isinstance(exc, DeliveryError):
                log.warning("send failed outbox=%s kind=%s: %s", claimed.row_id, claimed.kind, exc.__class__.__name__)
            retry_for = (claimed.retry_until - self.clock()).total_seconds() if claimed.retry_until else None
            outcome = outcome_for(exc, attempts=claimed.attempts, max_attempts=claimed.max_attempts,
                                  retry_for=retry_for, give_up_as=claimed.give_up_as, backoff_cap=claimed.backoff_cap)
        finally:
            if slot is not None:
                await self.limiter.finished(slot)
        await asyncio.to_thread(self.record, claimed, outcome, receipt)
        return outcome

    def provider_ids_taken(self, claimed: Claimed) -> set[str]:
        """Provider ids already recorded for this customer's other messages around the claim:
        reconciliation must never match one of them (it would be another row's message)."""
        if claimed.message is None or claimed.customer_id is None:
            return set()
        since_raw = claimed.message.payload.get("claimed_since")
        since = datetime.fromisoformat(since_raw) - timedelta(hours=1) if since_raw else None
        with self.db.read() as session:
            query = select(Message.provider_message_id).where(
                Message.customer_id == claimed.customer_id, Message.direction == "out",
                col(Message.provider_message_id).is_not(None), Message.id != claimed.message.message_id)
            if since is not None:
                query = query.where(or_(col(Message.sent_at) >= since, col(Message.sent_at).is_(None)))
            return {str(pid) for pid in session.exec(query).all() if pid}

    def record(self, claimed: Claimed, outcome: Outcome, receipt: Receipt | None) -> None:
        now = self.clock()
        self.db.retry_on_disconnect(lambda: self._record(claimed, outcome, receipt, now), what="record")

    def _record(self, claimed: Claimed, outcome: Outcome, receipt: Receipt | None, now: datetime) -> None:
        with self.db.session() as session:
            if self._record_guarded(session, claimed, outcome, receipt, now):
                return
            row = session.get(Outbox, claimed.row_id)
            if row is None:
                return
            if row.status != "sending" or row.claimed_by != self.worker_id:
                # Our lease expired and another worker took the row: its outcome wins.
                log.warning("outbox=%s was reclaimed by another worker; not recording", claimed.row_id)
                return
            message = session.get(Message, row.message_id) if row.message_id else None
            row.updated_at = now
            row.claimed_until = None
            if outcome.status == "sent" and receipt is not None and receipt.provider_id and message is not None \
                    and _provider_id_owned(session, receipt.provider_id, message):
                # Reconciliation matched a message another row already recorded: ours did not go out.
                log.warning("outbox=%s: reconciled id belongs to another message; sending again", claimed.row_id)
                row.status = "pending"
                row.attempts = max(0, row.attempts - 1)
                row.due_at = now
                row.last_error = "reconciliation matched another message; sent again"
            elif outcome.status == "sent":
                row.status = "sent"
                row.sent_at = now
                row.provider_id = receipt.provider_id if receipt else None
                row.last_error = None
                if message is not None:
                    message.status = receipt.status if receipt and receipt.status in {"sent", "delivered", "queued"} else "sent"
                    message.provider_message_id = receipt.provider_id if receipt else None
                    message.sent_at = now
                    if receipt and receipt.channel:
                        message.channel = receipt.channel
            elif outcome.status == "deferred":
                # Rate-limited: not an attempt, just later.
                row.status = "pending"
                row.attempts = max(0, row.attempts - 1)
                row.due_at = now + timedelta(seconds=outcome.retry_in or 1)
            elif outcome.status == "retry":
                row.status = "pending"
                row.due_at = now + timedelta(seconds=outcome.retry_in or 1)
                if row.expires_at is not None:
                    row.due_at = min(row.due_at, row.expires_at)  # closed as expired then, not left waiting
                row.last_error = outcome.error
            elif outcome.status == "fallback" and message is not None and self._fall_back(session, row, message, outcome):
                pass
            else:  # failed | dead | expired | fallback impossible
                row.status = outcome.status if outcome.status in {"dead", "expired"} else "failed"
                row.last_error = outcome.error
                if message is not None:
                    message.status = "expired" if outcome.status == "expired" else "failed"
                    message.error = (outcome.error or "")[:500]
                    message.error_code = outcome.error_code
                    if outcome.opt_out and message.customer_id:
                        outbox.mark_opted_out(session, message.customer_id, message.channel)
            session.add(row)
            if message is not None:
                session.add(message)

    def _record_guarded(self, session: Session, claimed: Claimed, outcome: Outcome, receipt: Receipt | None,
                        now: datetime) -> bool:
        """The common outcomes (sent, put back) as UPDATEs guarded by our lease, without loading the rows.

        False: the outcome needs the loaded rows (a reconciled send, whose provider id may belong to
        another message; retries, fallbacks, failures), and `record` takes the long way."""
        if outcome.status == "sent" and not claimed.reclaimed:
            values: dict[str, Any] = {"status": "sent", "sent_at": now,
                                      "provider_id": receipt.provider_id if receipt else None, "last_error": None}
        elif outcome.status == "deferred":
            # Rate-limited or put back: not an attempt, just later.
            values = {"status": "pending", "attempts": sa.case((OUTBOX.c.attempts > 0, OUTBOX.c.attempts - 1), else_=0),
                      "due_at": now + timedelta(seconds=outcome.retry_in or 1)}
        else:
            return False
        updated = session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.id == claimed.row_id, OUTBOX.c.status == "sending", OUTBOX.c.claimed_by == self.worker_id)
            .values(**values, claimed_until=None, updated_at=now))
        if updated.rowcount != 1:  # type: ignore[attr-defined]
            # Our lease expired and another worker took the row (or it is gone): its outcome wins.
            log.warning("outbox=%s was reclaimed by another worker; not recording", claimed.row_id)
            return True
        message_id = claimed.message.message_id if claimed.message is not None else None
        if outcome.status == "sent" and message_id is not None:
            changes: dict[str, Any] = {
                "status": receipt.status if receipt and receipt.status in {"sent", "delivered", "queued"} else "sent",
                "provider_message_id": receipt.provider_id if receipt else None, "sent_at": now}
            if receipt and receipt.channel:
                changes["channel"] = receipt.channel
            session.execute(sa.update(MESSAGE).where(MESSAGE.c.id == message_id).values(**changes))
        return True

    def _fall_back(self, session: Session, row: Outbox, message: Message, outcome: Outcome) -> bool:
        """WhatsApp refused (window closed): send the same message by SMS instead, if we may."""
        customer = session.get(Customer, message.customer_id) if message.customer_id else None
        target = fallback_channel(message.channel, customer, self.settings)
        if target is None:
            return False
        log.info("outbox=%s %s refused (%s); falling back to %s", row.id, message.channel, outcome.error_code, target)
        row.payload = {**row.payload, "fallback_from": message.channel}
        row.channel = target
        row.status = "pending"
        row.due_at = self.clock()
        row.last_error = outcome.error
        message.channel = target
        message.status = "queued"
        message.error_code = outcome.error_code
        message.error = f"{outcome.error or 'window closed'}; sent by {target} instead"[:500]
        return True

    async def run_once(self, limit: int = 50) -> int:
        claimed = await asyncio.to_thread(self.claim_once, limit)
        # One lane per recipient: a customer's messages go out in order (whatever the channel),
        # different customers in parallel.
        lanes: dict[tuple[str, str | None, str], list[Claimed]] = {}
        for item in claimed:
            if item.kind == "message" and item.customer_id is not None:
                lane: tuple[str, str | None, str] = ("message", None, str(item.customer_id))
            else:
                lane = (item.kind, item.channel, item.message.to if item.message else str(item.row_id))
            lanes.setdefault(lane, []).append(item)
        for items in lanes.values():
            items.sort(key=lambda i: i.order_key or (datetime.min.replace(tzinfo=UTC), i.row_id))

        started = time.monotonic()

        async def drain(items: list[Claimed]) -> None:
            waiting = False
            for item in items:
                if waiting or time.monotonic() - started > LEASE.total_seconds() / 2:
                    # Put back, not an attempt: behind a message that must wait (the customer's order),
                    # or a long rate-limited lane that must not outlive its lease.
                    await asyncio.to_thread(self.record, item, Outcome("deferred", retry_in=0.0), None)
                    continue
                outcome = await self.deliver(item)
                waiting = item.kind == "message" and item.customer_id is not None and outcome.status not in FINAL

        await asyncio.gather(*(drain(items) for items in lanes.values()))
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, *, idle_sleep: float = 0.5) -> None:
        wake = asyncio.Event()
        entry = (asyncio.get_running_loop(), wake)
        with _wake_lock:
            _wake_events.add(entry)
        listener = wakeup.listen(self.db, self.settings, wake)  # other processes' new rows (PostgreSQL)
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    count = await self.run_once()
                except Exception:
                    log.exception("dispatcher iteration failed; retrying")
                    count = 0
                if count == 0:
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                    await asyncio.wait(waiters, timeout=idle_sleep, return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            with _wake_lock:
                _wake_events.discard(entry)
            await wakeup.stop(listener)
            await self.aclose()

    async def aclose(self) -> None:
        """Close the senders' connections (aiogram's HTTP session, …); they reopen if used again."""
        for key, sender in list(self._senders.items()):
            close = getattr(sender, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.warning("closing the %s sender failed", key, exc_info=True)


# ---------------------------------------------------------------- one customer's order


def order_key(row: Outbox) -> tuple[datetime, int]:
    """A customer's sending order: when the message was first due, then when it was queued."""
    return (row.first_due_at or row.due_at, row.id or 0)


def _waits_behind_an_earlier_message(now: datetime) -> Any:
    """SQL: an earlier message of the same customer is unfinished and will not go before this
    one in this batch: it waits for its next try, another worker's lease holds it, or it sorts
    after this row in the claim order (a retried message's `due_at` moved on).

    So every row that passes has its earlier siblings ahead of it in the claim order, and the
    batch limit can never take a customer's later message while leaving out the earlier one.
    """
    earlier = aliased(Outbox)
    status, due_at, claimed_until, row_id, priority = (
        col(earlier.status), col(earlier.due_at), col(earlier.claimed_until), col(earlier.id), col(earlier.priority))
    earlier_first = func.coalesce(col(earlier.first_due_at), due_at)
    this_first = func.coalesce(col(Outbox.first_due_at), col(Outbox.due_at))
    claimable = or_(and_(status == "pending", due_at <= now), and_(status == "sending", claimed_until < now))
    this_priority, this_due, this_id = col(Outbox.priority), col(Outbox.due_at), col(Outbox.id)
    claimed_before = or_(priority < this_priority,
                         and_(priority == this_priority, or_(due_at < this_due, and_(due_at == this_due,
                                                                                    row_id < this_id))))
    return exists().where(
        col(earlier.kind) == "message",
        col(earlier.customer_id) == col(Outbox.customer_id),
        row_id != this_id,
        status.in_(UNFINISHED),
        or_(earlier_first < this_first, and_(earlier_first == this_first, row_id < this_id)),
        not_(and_(claimable, claimed_before)),
    )


Loaded = tuple[Outbox, Message | None, Customer | None]


def _in_recipient_order(session: Session, batch: list[Loaded]) -> list[Loaded]:
    """Drop a message row whose customer has an earlier unfinished message outside this batch.

    The SQL filter saw a snapshot; this check, in the same transaction, catches an earlier row
    that another worker holds locked (SKIP LOCKED skipped it) or that the batch limit cut off.
    """
    rows = [row for row, _, _ in batch]
    taken = {row.id for row in rows}
    customers = {row.customer_id for row in rows if row.kind == "message" and row.customer_id is not None}
    if not customers:
        return batch
    # Only siblings that sort before (or with) the batch's latest row can hold one back: a customer
    # with a long schedule ahead (journeys) would otherwise bring all of it back on every claim.
    latest = max(order_key(row)[0] for row in rows if row.kind == "message" and row.customer_id is not None)
    unfinished = session.exec(select(Outbox.id, Outbox.customer_id, Outbox.first_due_at, Outbox.due_at).where(
        Outbox.kind == "message", col(Outbox.customer_id).in_(customers), col(Outbox.status).in_(UNFINISHED),
        func.coalesce(col(Outbox.first_due_at), col(Outbox.due_at)) <= latest,
    )).all()
    by_customer: dict[int, list[tuple[tuple[datetime, int], int]]] = {}
    for row_id, customer_id, first_due_at, due_at in unfinished:
        by_customer.setdefault(customer_id or 0, []).append(((first_due_at or due_at, row_id or 0), row_id or 0))
    allowed: set[int] = set()
    for siblings in by_customer.values():
        for _, row_id in sorted(siblings):
            if row_id not in taken:
                break  # everything after a sibling we do not hold must wait for it
            allowed.add(row_id)
    return [loaded for loaded in batch
            if loaded[0].kind != "message" or loaded[0].customer_id is None or loaded[0].id in allowed]


def _message_policy(row: Outbox) -> dict[str, Any]:
    """Claimed fields of the time-based retry policy (messages) and the customer's order."""
    if row.kind != "message":
        return {"customer_id": row.customer_id}
    if row.expires_at is not None:
        until, give_up_as = row.expires_at, "expired"
    else:
        until, give_up_as = (row.first_due_at or row.due_at) + MESSAGE_RETRY_HORIZON, "dead"
    cap = REPLY_BACKOFF_CAP_SECONDS if row.priority <= PRIORITY_REPLY else MESSAGE_BACKOFF_CAP_SECONDS
    return {"customer_id": row.customer_id, "order_key": order_key(row), "retry_until": until,
            "give_up_as": give_up_as, "backoff_cap": cap}


def _provider_id_owned(session: Session, provider_id: str, message: Message) -> bool:
    return session.exec(select(Message.id).where(
        Message.channel == message.channel, Message.provider_message_id == provider_id, Message.id != message.id,
    )).first() is not None


def _address(customer: Customer | None, channel: str) -> str:
    if customer is None:
        return ""
    if channel == "telegram":
        return customer.telegram_chat_id or ""
    return customer.phone or ""
