"""The dispatcher: sends committed outbox rows, with retries, rate limits and one failure policy.

Claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer) by moving them to `sending` with a lease, in one transaction per
batch: plain rows with their message and customer joined, one UPDATE for
the batch. The batch grows (50, 100, … up to `MAX_BATCH`) while claims come
back full. It sends them outside any transaction, on the event loop (the
senders' pooled async clients, at most `MAX_SENDS_IN_FLIGHT` provider calls
at once), one lane per recipient.

Outcomes are recorded per batch, in groups as the sends finish (group
commit: while one group's transaction runs, the next gathers, so a slow send
holds no one else's outcome back): "sent" and "put back" as UPDATEs guarded
by the lease (`status = 'sending' AND claimed_by = me`), one statement per
table for the whole group (`UPDATE … FROM unnest(…)` on PostgreSQL,
executemany under SQLite's write lock, or for a lone row its guarded
`UPDATE … RETURNING`), one commit, on a plain connection (no ORM session). The
claim's, the record's and the rate limiter's statements are built once (building
a statement and its cache key cost more CPU than running it). The rare outcomes that
need the loaded rows (a reconciled send, a retry, a fallback, a failure)
take `record`, one transaction each. Within a lane, the next message of a
customer is sent only once the previous one's outcome has committed.

No double sends. A row is only sent by the worker holding its lease. A row
whose lease expired while `sending` (the worker crashed after claiming it)
is reclaimed; if its sender can reconcile (Twilio: list the messages sent to
that number since the claim and match the text, skipping every provider id
already recorded for another row, so it can only match the one message this
row sent: one customer has at most one message whose outcome is not
committed), the provider is asked first, so the ordinary crash does not send
twice. The crash window is the time between the provider's answer and the
commit of the group holding its outcome: at most the group transaction that
is running plus its own (milliseconds to tens of milliseconds; one
transaction per send before), but it now covers every send that finished in
that time, up to a batch of them, where it covered one. What remains: a
crash inside that window, on a channel that cannot reconcile (Telegram), or
a Twilio template message, sends those once more after the lease (60 s)
expires (tests/channels/test_batch_crash.py kills a worker mid-batch on
Twilio and checks that nothing is lost or sent twice).

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
wait. The SQL filter keeps blocked rows out of the batch; a second check, in
the claim's own statement on the rows it locked, drops a row whose earlier
sibling was skipped (locked by another worker, or beyond the batch limit), so
two workers never send one customer's messages out of order.

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
rows carry whether the 24-hour window is open and the synced Content templates
(buttons, lists, templates for outside the window; bot.store.content); `WindowClosed`
falls back to SMS.

`outcome_for` is the one place that maps delivery errors to retry, fallback
or failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
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
from sqlmodel import Session, col, func, or_, select

from bot.core.channels import OutboundMessage, Receipt, Sender
from bot.core.clock import Clock, system_clock
from bot.core.db import Database, constants_in, ids_param
from bot.core.errors import DeliveryError
from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery import senders, wakeup
from bot.delivery.outcomes import BACKOFF_CAP_SECONDS, Outcome, fallback_channel, outcome_for
from bot.delivery.ratelimits import Limit, RateLimiter, Slot, channel_limits
from bot.store import content, holds, outbox, planning
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
MIN_BATCH = 50  # rows claimed at once when few are due
MAX_BATCH = 500  # … growing (doubling) up to this while every claim comes back full
MAX_SENDS_IN_FLIGHT = 100  # provider calls at once per dispatcher (each sender pools as many connections)
CANDIDATES_PER_ROW = 4  # the claim checks the order of this many first claimable rows per row it takes
_NO_JIT = sa.text("SET LOCAL jit = off")
OUTBOX: sa.Table = Outbox.__table__  # type: ignore[attr-defined]
MESSAGE: sa.Table = Message.__table__  # type: ignore[attr-defined]
CUSTOMER: sa.Table = Customer.__table__  # type: ignore[attr-defined]
# What the claim reads of a row's message and customer, next to the outbox columns.
_MESSAGE_COLUMNS = (MESSAGE.c.id.label("m_id"), MESSAGE.c.channel.label("m_channel"), MESSAGE.c.text.label("m_text"),
                    MESSAGE.c.customer_id.label("m_customer_id"))
_CUSTOMER_COLUMNS = (CUSTOMER.c.id.label("c_id"), CUSTOMER.c.phone.label("c_phone"),
                     CUSTOMER.c.telegram_chat_id.label("c_telegram_chat_id"),
                     CUSTOMER.c.opted_out_channels.label("c_opted_out_channels"),
                     CUSTOMER.c.email.label("c_email"), CUSTOMER.c.email_status.label("c_email_status"),
                     CUSTOMER.c.viber_user_id.label("c_viber_user_id"), CUSTOMER.c.locale.label("c_locale"))


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


class ClaimedBatch(list[Claimed]):
    """What one claim took, and whether a claim right now could find more (`more_due`): its statement
    came back full (counting the rows settled during the claim: expired, cancelled, held), or it left
    a row behind an earlier message of its customer that is about to finish."""

    more_due: bool = False


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
        self._batch = MIN_BATCH
        self.drained = False  # the last `run_once` took every due row and settled each (see there)
        self._prefetched: asyncio.Future[tuple[ClaimedBatch, int, float]] | None = None

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

    def claim(self, limit: int = 50) -> ClaimedBatch:
        now = self.clock()
        claimed = ClaimedBatch()
        with self.db.session() as session:
            postgres = self.db.is_postgres
            params = {"now": now, "limit": limit, "candidates": limit * CANDIDATES_PER_ROW}
            rows: list[Any] | None = None
            if limit > MIN_BATCH:
                # A claim larger than the smallest batch follows a full one: a backlog. The order
                # check then runs on the first candidates in the claim order only, not on every due
                # row (10,000 due rows were 10,000 index probes a claim, ≈ 250 ms on PostgreSQL);
                # the full statement runs when they held too few claimable rows (a long queue of
                # one customer's messages, rows other workers hold).
                if postgres:
                    # With a large outbox the claim's estimated cost passes PostgreSQL's JIT
                    # threshold, and compiling it took ≈ 100 ms a claim for a plan run once.
                    session.execute(_NO_JIT)
                rows = list(session.execute(_claim_query(postgres, self.kinds, True), params).all())
            if rows is None or len(rows) < limit:
                rows = list(session.execute(_claim_query(postgres, self.kinds, False), params).all())
            batch = [row for row in rows if not row.left_behind]  # the customer's order (`_left_behind`)
            claimed.more_due = len(rows) >= limit or len(batch) < len(rows)
            human_owned = holds.human_owned(session, {row.customer_id for row in batch
                                                      if row.customer_id is not None and holds.is_automatic(row)})
            taking: list[int] = []
            synced_content: dict[str, str] | None = None
            for row in batch:
                reclaimed = row.status == "sending"
                previous_claim = (row.claimed_until - LEASE) if reclaimed and row.claimed_until else None
                if row.expires_at is not None and row.expires_at <= now:
                    reason = "obsolete: expired before it could be sent"
                    if row.attempts and row.last_error:
                        reason = f"obsolete: not delivered in time after {row.attempts} attempts ({row.last_error})"
                    outbox.set_status(session, *_loaded(session, row), "expired", reason=reason, now=now)
                    continue
                if (row.m_id is not None and row.c_id is not None and row.priority > PRIORITY_REPLY
                        and row.m_channel in (row.c_opted_out_channels or ())):
                    # Proactive message to someone who opted out of this channel: never send it.
                    outbox.set_status(session, *_loaded(session, row), "cancelled", reason="recipient opted out", now=now)
                    continue
                if not reclaimed and holds.is_automatic(row) and row.customer_id in human_owned:
                    holds.hold(session, *_loaded(session, row), now)
                    continue
                taking.append(row.id)
                attempts = row.attempts + 1
                outbound = None
                if row.m_id is not None:
                    payload = dict(row.payload)
                    if row.expires_at is not None:
                        # Twilio's ValidityPeriod: what is left of the message's useful life, by our clock.
                        payload["validity_seconds"] = max(1, int((row.expires_at - now).total_seconds()))
                    if previous_claim is not None:
                        payload["claimed_since"] = previous_claim.isoformat()
                    if row.m_channel == "whatsapp":
                        payload["whatsapp_window_open"] = planning.whatsapp_window_open(session, row.m_customer_id, now)
                        if synced_content is None:  # one read of the small table per batch
                            synced_content = content.usable(session)
                        payload["whatsapp_content"] = synced_content
                    if row.m_channel == "email":
                        # The reply address and unsubscribe link are signed for the customer; labels in their language.
                        payload.update(customer_id=row.c_id, locale=row.c_locale)
                    outbound = OutboundMessage(
                        outbox_id=row.id, message_id=row.m_id, channel=row.m_channel,
                        to=_address(row, row.m_channel), text=row.m_text,
                        kind=str(row.payload.get("template") or "reply"),
                        buttons=tuple((str(b[0]), str(b[1])) for b in row.payload.get("buttons", [])),
                        payload=payload, attempt=attempts,
                    )
                claimed.append(Claimed(row.id, row.kind, row.m_channel if row.m_id is not None else row.channel,
                                       reclaimed, outbound, dict(row.payload), row.event_id, attempts, row.max_attempts,
                                       **_message_policy(row)))
            if taking:
                # One statement for the batch (the rows are locked, or SQLite's write lock is held),
                # not an ORM flush of every row; built once (`_take_query`).
                session.execute(_take_query(postgres), {"ids": taking, "me": self.worker_id,
                                                        "until": now + LEASE, "now": now})
        return claimed

    def claim_once(self, limit: int = 50) -> ClaimedBatch:
        """`claim`, run once more if the connection was found dead (nothing of it committed)."""
        return self.db.retry_on_disconnect(lambda: self.claim(limit), what="claim")

    # ------------------------------------------------------------ sending

    async def attempt(self, claimed: Claimed, sending: asyncio.Semaphore | None = None) -> tuple[Outcome, Receipt | None]:
        """Send one claimed row (rate limits, reconciliation, the error map); the outcome is not recorded.

        `sending` bounds the provider calls in flight (held only around them, not while a
        rate limit is waited out)."""
        sender = self.sender_for(self.sender_key(claimed))
        if sender is None:
            return Outcome("failed", error=f"no sender for {self.sender_key(claimed)} (channel not configured)"), None
        receipt: Receipt | None = None
        if claimed.reclaimed and claimed.message is not None and hasattr(sender, "reconcile"):
            # Asked first, before a rate-limit slot can put the row back: a put-back row is claimed
            # later as a fresh one, never asked again, so a message the crashed worker got accepted
            # would go out twice. Asking is not a send; it takes no slot.
            try:
                if sending is not None:
                    await sending.acquire()
                # Read now, not at claim: an earlier message of this lane may have been recorded since.
                taken = await asyncio.to_thread(self.provider_ids_taken, claimed)
                asked = dataclasses.replace(claimed.message,
                                            payload={**claimed.message.payload, "taken_provider_ids": sorted(taken)})
                receipt = await sender.reconcile(asked)
            except Exception as exc:  # every failure is mapped; nothing escapes the loop
                return self._failure(claimed, exc), None
            finally:
                if sending is not None:
                    sending.release()
            if receipt is not None:
                return Outcome("sent"), receipt
        limits = channel_limits(self.settings, claimed.channel, claimed.message.to if claimed.message else "")
        slot: Slot | None = None
        if limits:
            prepare = getattr(sender, "prepare", None)
            if prepare is not None:
                await prepare()  # first-use work (imports, the client) before the slot, not inside it
            slot = await self._slot(limits)
            if (put_back := self._without(slot)) is not None:
                return put_back, None
        acquired = False
        try:
            if sending is not None:
                await sending.acquire()
                acquired = True
            if slot is not None and slot.late(self.limiter.clock()):
                # The provider calls in flight held this one past its slot: sent on it now, it could follow
                # the previous message to that sender sooner than the rate allows. A fresh slot, as `_slot`
                # takes one for a slot overslept; none within the wait: put back, not an attempt.
                slot = await self._slot(limits)
                if (put_back := self._without(slot)) is not None:
                    return put_back, None
            receipt = await sender.send(claimed.message if claimed.message is not None else claimed)  # type: ignore[arg-type]
            outcome = Outcome("sent")
        except Exception as exc:  # every failure is mapped; nothing escapes the loop
            outcome = self._failure(claimed, exc)
        finally:
            if acquired and sending is not None:
                sending.release()
            if slot is not None:
                await self.limiter.finished(slot)
        return outcome, receipt

    def _without(self, slot: Slot) -> Outcome | None:
        """The put-back (not an attempt) for a slot that cannot be sent on: none within MAX_INLINE_WAIT
        (due again when it would have come), or reached too late to keep the rate; None when usable."""
        now = self.limiter.clock()
        if not slot.granted:
            return Outcome("deferred", retry_in=max(0.0, slot.at - now))
        return Outcome("deferred", retry_in=0.0) if slot.late(now) else None

    async def _slot(self, limits: list[Limit]) -> Slot:
        """A rate-limit slot, waited for. A busy event loop can reach a slot after its tolerance
        (many sends due at once, each with its own CPU work): that slot is given up, the key
        having moved on past it, and a fresh one taken, until `max_wait` from the first ask has
        passed; then the late slot is returned and the message put back."""
        deadline = self.limiter.clock() + self.limiter.max_wait
        while True:
            slot = await self.limiter.acquire(limits)
            if not slot.granted:
                return slot
            await asyncio.sleep(max(0.0, slot.at - self.limiter.clock()))
            now = self.limiter.clock()
            if not slot.late(now) or now >= deadline:
                return slot

    def _failure(self, claimed: Claimed, exc: Exception) -> Outcome:
        """The one failure policy (`outcome_for`) for an exception of a provider call."""
        if not isinstance(exc, DeliveryError):
            log.warning("send failed outbox=%s kind=%s: %s", claimed.row_id, claimed.kind, exc.__class__.__name__)
        retry_for = (claimed.retry_until - self.clock()).total_seconds() if claimed.retry_until else None
        return outcome_for(exc, attempts=claimed.attempts, max_attempts=claimed.max_attempts,
                           retry_for=retry_for, give_up_as=claimed.give_up_as, backoff_cap=claimed.backoff_cap)

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

    @staticmethod
    def batchable(claimed: Claimed, outcome: Outcome) -> bool:
        """The common outcomes `record_many` writes without loading the rows: a first-hand "sent"
        and a put-back. A reconciled send (its provider id may belong to another message), a retry,
        a fallback or a failure takes `record`."""
        return (outcome.status == "sent" and not claimed.reclaimed) or outcome.status == "deferred"

    def record_many(self, outcomes: list[tuple[Claimed, Outcome, Receipt | None]]) -> None:
        """Record `batchable` outcomes in one transaction: UPDATEs guarded by our lease
        (`status = 'sending' AND claimed_by = me`), one statement per table and kind, not per row."""
        now = self.clock()
        self.db.retry_on_disconnect(lambda: self._record_many(outcomes, now), what="record")

    def _record_many(self, outcomes: list[tuple[Claimed, Outcome, Receipt | None]], now: datetime) -> None:
        sent = [(claimed, receipt) for claimed, outcome, receipt in outcomes if outcome.status == "sent"]
        put_back = [(claimed, outcome) for claimed, outcome, _ in outcomes if outcome.status == "deferred"]
        assert len(sent) + len(put_back) == len(outcomes), "record_many takes batchable outcomes only"
        postgres = self.db.is_postgres
        with self.db.write_connection() as conn:  # Core statements only: no ORM session
            owned: set[int] = set()
            if sent and postgres:
                # One UPDATE … FROM unnest(arrays) RETURNING: which rows were still ours (two array
                # parameters, so the statement compiles once, whatever the batch size).
                owned = set(conn.execute(_SENT_PG, {
                    "ids": [c.row_id for c, _ in sent], "provider_ids": [r.provider_id if r else None for _, r in sent],
                    "now": now, "me": self.worker_id}).scalars())
            elif len(sent) == 1:
                # SQLite, one row (a lone reply): the guarded UPDATE … RETURNING says whether it was ours.
                claimed, receipt = sent[0]
                owned = set(conn.execute(_SENT_ONE_SQLITE, {
                    "row_id": claimed.row_id, "provider_id": receipt.provider_id if receipt else None, "now": now,
                    "me": self.worker_id}).scalars())
            elif sent:
                # SQLite: this transaction holds the one write lock (BEGIN IMMEDIATE), so the rows
                # read as ours stay ours until the executemany below commits.
                owned = set(conn.execute(_OURS_SQLITE, {
                    "ids": [c.row_id for c, _ in sent], "me": self.worker_id}).scalars())
                if owned:
                    conn.execute(_SENT_SQLITE, [{"row_id": c.row_id, "provider_id": r.provider_id if r else None,
                                                    "now": now} for c, r in sent if c.row_id in owned])
            for claimed, _ in sent:
                if claimed.row_id not in owned:
                    # Our lease expired and another worker took the row (or it is gone): its outcome wins.
                    log.warning("outbox=%s was reclaimed by another worker; not recording", claimed.row_id)
            messages = [{"message_id": c.message.message_id,
                         "status": r.status if r and r.status in {"sent", "delivered", "queued"} else "sent",
                         "provider_id": r.provider_id if r else None, "channel": r.channel if r else None}
                        for c, r in sent
                        if c.row_id in owned and c.message is not None and c.message.message_id is not None]
            if messages and postgres:
                conn.execute(_SENT_MESSAGES_PG, {
                    "ids": [m["message_id"] for m in messages], "statuses": [m["status"] for m in messages],
                    "provider_ids": [m["provider_id"] for m in messages], "channels": [m["channel"] for m in messages],
                    "now": now})
            elif messages:
                conn.execute(_SENT_MESSAGES_SQLITE, [{**m, "now": now} for m in messages])
            if put_back:
                # Rate-limited or put back: not an attempt, just later.
                conn.execute(_PUT_BACK, [{"row_id": c.row_id, "due_at": now + timedelta(seconds=o.retry_in or 1),
                                             "now": now, "me": self.worker_id} for c, o in put_back])

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
                        outbox.mark_opted_out(session, message.customer_id, message.channel, code=outcome.error_code or "")
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

    async def _claim(self, size: int) -> tuple[ClaimedBatch, int, float]:
        started = time.monotonic()
        return await asyncio.to_thread(self.claim_once, size), size, started

    async def run_once(self, limit: int | None = None, *, prefetch: bool = False) -> int:
        """Claim one batch, send it (lanes in parallel, at most `MAX_SENDS_IN_FLIGHT` provider calls
        at once) and record its outcomes in groups as they finish. Without `limit` the batch grows
        (up to `MAX_BATCH`) while claims come back full, and falls back to `MIN_BATCH` when not.

        `prefetch` (a long-running loop, `run_forever`): when the batch came back full, the next
        one is claimed while this one is sent, so the claim's round trips overlap the sends; the
        next call starts with it. `release_prefetched` puts it back when the loop ends."""
        if self._prefetched is not None:
            pending, self._prefetched = self._prefetched, None
            claimed, size, started = await pending
        else:
            claimed, size, started = await self._claim(limit or self._batch)
        full = len(claimed) >= size or claimed.more_due
        if limit is None:
            self._batch = min(MAX_BATCH, size * 2) if full else MIN_BATCH
            if prefetch and full:
                self._prefetched = asyncio.ensure_future(self._claim(self._batch))
        # Whether a claim right now could find more: not when this one came back short of its limit
        # and every row in it was settled (sent or given up): then the due rows were all taken, and a
        # new one wakes the loop (`wake_dispatchers`, LISTEN/NOTIFY) — an empty claim after every
        # lone reply cost as much CPU as the reply's own claim. A row put back (rate limit, a
        # customer's order, a retry) may be due again at once: the loop claims again.
        self.drained = not full
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

        sending = asyncio.Semaphore(MAX_SENDS_IN_FLIGHT)
        recorder = _GroupRecorder(self)

        async def drain(items: list[Claimed]) -> None:
            waiting = False
            for index, item in enumerate(items):
                if waiting or time.monotonic() - started > LEASE.total_seconds() / 2:
                    # Put back, not an attempt: behind a message that must wait (the customer's order),
                    # or a long rate-limited lane that must not outlive its lease.
                    recorder.add(item, Outcome("deferred", retry_in=0.0), None)
                    self.drained = False
                    continue
                outcome, receipt = await self.attempt(item, sending)
                if outcome.status not in FINAL:
                    self.drained = False
                if self.batchable(item, outcome):
                    recorded = recorder.add(item, outcome, receipt)
                    if index + 1 < len(items) and not await recorded:
                        return  # not recorded (the database failed): the lease covers the rest of the lane
                else:
                    await asyncio.to_thread(self.record, item, outcome, receipt)
                waiting = item.kind == "message" and item.customer_id is not None and outcome.status not in FINAL

        try:
            await asyncio.gather(*(drain(items) for items in lanes.values()))
        finally:
            await recorder.close()
        return len(claimed)

    async def run_once_and_close(self, limit: int | None = None) -> int:
        """`run_once` for a caller that gives each call an event loop of its own (`asyncio.run`):
        the senders' pooled connections belong to that loop and are closed before it ends."""
        try:
            return await self.run_once(limit)
        finally:
            await self.aclose()

    async def release_prefetched(self) -> None:
        """Put back the batch claimed ahead (the loop is ending): not an attempt, due a second later.
        A reclaimed row in it keeps its lease, as if this worker had stopped right after the claim:
        put back as pending, it would lose the claim time its reconciliation needs."""
        if self._prefetched is None:
            return
        pending, self._prefetched = self._prefetched, None
        claimed, _, _ = await pending
        fresh: list[tuple[Claimed, Outcome, Receipt | None]] = [
            (item, Outcome("deferred", retry_in=0.0), None) for item in claimed if not item.reclaimed]
        if fresh:
            await asyncio.to_thread(self.record_many, fresh)

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
                    count = await self.run_once(prefetch=True)
                except Exception:
                    log.exception("dispatcher iteration failed; retrying")
                    count = 0
                if count == 0 or self.drained:
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                    await asyncio.wait(waiters, timeout=idle_sleep, return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            with _wake_lock:
                _wake_events.discard(entry)
            try:
                await self.release_prefetched()
            except Exception:
                log.warning("putting back the batch claimed ahead failed; its lease runs out instead", exc_info=True)
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


_TIMESTAMP = OUTBOX.c.sent_at.type
# The text statements that return rows name their columns by position (`sa.column`, not keywords):
# SQLAlchemy then keeps the result's metadata with the compiled statement instead of matching the
# driver's column names again on every execution.
_SENT_PG = sa.text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, provider_id = given.provider_id, last_error = NULL, "
    "claimed_until = NULL, updated_at = :now "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:provider_ids AS varchar[])) AS given(row_id, provider_id) "
    "WHERE outbox.id = given.row_id AND outbox.status = 'sending' AND outbox.claimed_by = :me "
    "RETURNING outbox.id").bindparams(sa.bindparam("now", type_=_TIMESTAMP)).columns(sa.column("id", sa.Integer))
_SENT_MESSAGES_PG = sa.text(
    "UPDATE message SET status = given.status, provider_message_id = given.provider_id, sent_at = :now, "
    "channel = coalesce(given.channel, message.channel) "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:statuses AS varchar[]), CAST(:provider_ids AS varchar[]), "
    "CAST(:channels AS varchar[])) AS given(message_id, status, provider_id, channel) "
    "WHERE message.id = given.message_id").bindparams(sa.bindparam("now", type_=_TIMESTAMP))


# SQLite's statements of `record_many`, built once (building one and its cache key on every call
# cost more CPU than running it).
_SENT_ONE_SQLITE = sa.text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, provider_id = :provider_id, last_error = NULL, "
    "claimed_until = NULL, updated_at = :now WHERE id = :row_id AND status = 'sending' AND claimed_by = :me "
    "RETURNING id").bindparams(sa.bindparam("now", type_=_TIMESTAMP)).columns(sa.column("id", sa.Integer))
_OURS_SQLITE = sa.select(OUTBOX.c.id).where(ids_param(False, OUTBOX.c.id, "ids"),
                                            OUTBOX.c.status == "sending",
                                            OUTBOX.c.claimed_by == sa.bindparam("me", type_=sa.String()))
_SENT_SQLITE = sa.update(OUTBOX).where(OUTBOX.c.id == sa.bindparam("row_id")).values(
    status="sent", sent_at=sa.bindparam("now", type_=_TIMESTAMP), provider_id=sa.bindparam("provider_id"),
    last_error=None, claimed_until=None, updated_at=sa.bindparam("now", type_=_TIMESTAMP))
_SENT_MESSAGES_SQLITE = sa.update(MESSAGE).where(MESSAGE.c.id == sa.bindparam("message_id")).values(
    status=sa.bindparam("status"), provider_message_id=sa.bindparam("provider_id"),
    sent_at=sa.bindparam("now", type_=_TIMESTAMP),
    channel=func.coalesce(sa.bindparam("channel", type_=sa.String), MESSAGE.c.channel))
# Rate-limited or put back (both backends): pending again, not an attempt, guarded by our lease.
_PUT_BACK = sa.update(OUTBOX).where(
    OUTBOX.c.id == sa.bindparam("row_id"), OUTBOX.c.status == "sending",
    OUTBOX.c.claimed_by == sa.bindparam("me", type_=sa.String())).values(
    status="pending", due_at=sa.bindparam("due_at", type_=OUTBOX.c.due_at.type),
    attempts=sa.case((OUTBOX.c.attempts > 0, OUTBOX.c.attempts - 1), else_=0),
    claimed_until=None, updated_at=sa.bindparam("now", type_=_TIMESTAMP))


class _GroupRecorder:
    """Outcomes of one claimed batch, written by `Dispatcher.record_many` in groups as the sends
    finish: while one group's transaction runs, the next group gathers (group commit), so a slow
    send never holds the others' outcomes back, and a batch costs a few commits, not one per send."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.waiting: list[tuple[Claimed, Outcome, Receipt | None, asyncio.Future[bool]]] = []
        self.writer: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def add(self, claimed: Claimed, outcome: Outcome, receipt: Receipt | None) -> asyncio.Future[bool]:
        """Queue one outcome; the future says whether its group committed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((claimed, outcome, receipt, done))
        if self.writer is None:
            self.writer = asyncio.ensure_future(self._write())
        return done

    async def _write(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            try:
                await asyncio.to_thread(self.dispatcher.record_many, [(c, o, r) for c, o, r, _ in group])
                committed = True
            except Exception as exc:
                # Not recorded: those rows stay `sending` until their lease expires, then are
                # reclaimed and reconciled like after a crash.
                log.exception("recording %d outcomes failed", len(group))
                self.error = self.error or exc
                committed = False
            for *_, done in group:
                done.set_result(committed)
        self.writer = None

    async def close(self) -> None:
        """Wait until every queued outcome is written; raise if a group failed."""
        while self.writer is not None:
            await asyncio.shield(self.writer)
        if self.error is not None:
            raise self.error


# ---------------------------------------------------------------- one customer's order


@functools.lru_cache(maxsize=16)
def _claim_query(postgres: bool, kinds: tuple[str, ...] | None, among_candidates: bool) -> Any:
    """The claim's statement, built once (its `now` and `limit` are parameters): building it (an
    aliased table, the order check's subquery) cost more CPU than running it, on every claim.

    `among_candidates`: only the first `:candidates` claimable rows in the claim order (no lock,
    no order check) are considered, so the per-customer order check runs on those, not on every
    due row. Which rows are taken is the same whenever the candidates hold `limit` rows that pass
    the check; the caller runs the full statement when they do not."""
    now = sa.bindparam("now", type_=OUTBOX.c.due_at.type)
    claimable = or_(
        (OUTBOX.c.status == "pending") & (OUTBOX.c.due_at <= now),
        (OUTBOX.c.status == "sending") & (OUTBOX.c.claimed_until < now),
    )
    # The row's message and customer come with it, as plain rows (one query, no ORM objects:
    # building them cost more than the query); only the outbox rows are locked (PostgreSQL
    # refuses FOR UPDATE on an outer join's nullable side).
    picking = sa.select(OUTBOX).where(claimable)
    if among_candidates:
        first = sa.select(OUTBOX.c.id).where(claimable)
        if kinds:
            first = first.where(constants_in(OUTBOX.c.kind, kinds))
        candidates = first.order_by(OUTBOX.c.priority, OUTBOX.c.due_at, OUTBOX.c.id).limit(
            sa.bindparam("candidates", type_=sa.Integer())).cte("candidates")
        ids = sa.select(candidates.c.id)
        # PostgreSQL: `id = ANY(ARRAY(…))` is looked up in the primary key, candidate by candidate. With
        # `IN (…)` the planner, misjudging how many rows are due, scanned every due row and hashed them
        # against the candidates (10,000 due: 70 ms a claim, 65,000 buffers; measured with auto_explain).
        picking = picking.where(OUTBOX.c.id == sa.any_(func.array(ids.scalar_subquery())) if postgres
                                else OUTBOX.c.id.in_(ids))
    picking = (
        picking
        .where(or_(OUTBOX.c.kind != "message", OUTBOX.c.customer_id.is_(None),
                   not_(_waits_behind_an_earlier_message(now))))
        .order_by(OUTBOX.c.priority, OUTBOX.c.due_at, OUTBOX.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
        .with_for_update(skip_locked=postgres)  # SQLite: no row locks (its one writer serialises claims)
    )
    if kinds:
        picking = picking.where(constants_in(OUTBOX.c.kind, kinds))
    # The joins come after the limit: only the picked rows' messages and customers are read.
    picked = picking.cte("picked")
    return (
        sa.select(picked, *_MESSAGE_COLUMNS, *_CUSTOMER_COLUMNS, _left_behind(picked).label("left_behind"))
        .select_from(picked.outerjoin(MESSAGE, MESSAGE.c.id == picked.c.message_id)
                     .outerjoin(CUSTOMER, CUSTOMER.c.id == picked.c.customer_id))
        .order_by(picked.c.priority, picked.c.due_at, picked.c.id)
    )


def order_key(row: Any) -> tuple[datetime, int]:
    """A customer's sending order: when the message was first due, then when it was queued."""
    return (row.first_due_at or row.due_at, row.id or 0)


def _waits_behind_an_earlier_message(now: Any) -> Any:
    """SQL: an earlier message of the same customer is unfinished and will not go before this
    one in this batch: it waits for its next try, another worker's lease holds it, or it sorts
    after this row in the claim order (a retried message's `due_at` moved on).

    So every row that passes has its earlier siblings ahead of it in the claim order, and the
    batch limit can never take a customer's later message while leaving out the earlier one.
    """
    earlier = OUTBOX.alias("earlier")
    status, due_at, claimed_until, row_id, priority = (
        earlier.c.status, earlier.c.due_at, earlier.c.claimed_until, earlier.c.id, earlier.c.priority)
    earlier_first = func.coalesce(earlier.c.first_due_at, due_at)
    this_first = func.coalesce(OUTBOX.c.first_due_at, OUTBOX.c.due_at)
    claimable = or_(and_(status == "pending", due_at <= now), and_(status == "sending", claimed_until < now))
    this_priority, this_due, this_id = OUTBOX.c.priority, OUTBOX.c.due_at, OUTBOX.c.id
    claimed_before = or_(priority < this_priority,
                         and_(priority == this_priority, or_(due_at < this_due, and_(due_at == this_due,
                                                                                    row_id < this_id))))
    return exists().where(
        earlier.c.kind == "message",
        earlier.c.customer_id == OUTBOX.c.customer_id,
        row_id != this_id,
        constants_in(status, UNFINISHED),
        # Bounds the index scan to the customer's earlier rows. A message row without `first_due_at`
        # (none since migration 0007) is not seen here; `_left_behind` still holds it back.
        earlier.c.first_due_at <= this_first,
        or_(earlier_first < this_first, and_(earlier_first == this_first, row_id < this_id)),
        not_(and_(claimable, claimed_before)),
    )


def _first_due_up_to(table: Any, bound: Any) -> Any:
    """SQL: `coalesce(first_due_at, due_at) <= bound`, written so that the index on (customer_id,
    status, first_due_at) bounds the scan: a customer's later schedule (a million rows of journeys)
    is never read. Every message row has `first_due_at` (migration 0007, `enqueue_message`); the
    second branch keeps any row without it."""
    first_due_at, due_at = col(table.first_due_at), col(table.due_at)
    return or_(first_due_at <= bound, and_(first_due_at.is_(None), due_at <= bound))


@functools.lru_cache(maxsize=2)
def _take_query(postgres: bool) -> Any:
    """The claim's UPDATE of the rows it takes (`:ids`) to `sending` under this worker's lease,
    built once: building it and its cache key on every claim cost more than running it."""
    timestamp = OUTBOX.c.updated_at.type
    return sa.update(OUTBOX).where(ids_param(postgres, OUTBOX.c.id, "ids")).values(
        status="sending", attempts=OUTBOX.c.attempts + 1, claimed_by=sa.bindparam("me", type_=sa.String()),
        claimed_until=sa.bindparam("until", type_=OUTBOX.c.claimed_until.type),
        updated_at=sa.bindparam("now", type_=timestamp))


def _left_behind(picked: Any) -> Any:
    """SQL, for each picked row: an earlier unfinished message of its customer is not among the
    picked rows (another worker holds it locked, so SKIP LOCKED skipped it, or the limit cut it
    off). Such a row is not taken: it waits for that message.

    The filter of `_waits_behind_an_earlier_message` chose the rows; this check runs on the rows
    the claim actually locked, in the same statement (PostgreSQL: the same snapshot as the
    filter, so a sibling another worker is taking right now still reads as unfinished), and it
    sees every earlier sibling, a row without `first_due_at` too. It was a second query of the
    claim's transaction (`_in_recipient_order`): the same condition, one statement less."""
    sibling = OUTBOX.alias("sibling")
    mine = picked.alias("mine")  # its own FROM: not correlated to the row being checked
    sibling_first = func.coalesce(sibling.c.first_due_at, sibling.c.due_at)
    this_first = func.coalesce(picked.c.first_due_at, picked.c.due_at)
    return exists().where(
        picked.c.kind == "message",
        sibling.c.kind == "message",
        sibling.c.customer_id == picked.c.customer_id,
        constants_in(sibling.c.status, UNFINISHED),
        _first_due_up_to(sibling.c, this_first),  # bounds the index scan to the customer's earlier rows
        or_(sibling_first < this_first, and_(sibling_first == this_first, sibling.c.id < picked.c.id)),
        sibling.c.id.not_in(sa.select(mine.c.id)),
    ).correlate(picked)


def _loaded(session: Session, row: Any) -> tuple[Outbox, Message | None]:
    """The ORM objects of a claimed row and its message, for the rare outcomes that change them
    through the store (expired, cancelled, held)."""
    loaded = session.get(Outbox, row.id)
    assert loaded is not None  # locked by this claim
    return loaded, session.get(Message, row.m_id) if row.m_id is not None else None


def _message_policy(row: Any) -> dict[str, Any]:
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


def _address(row: Any, channel: str) -> str:
    """The claimed row's customer's address on `channel` (empty without a customer)."""
    if row.c_id is None:
        return ""
    if channel == "telegram":
        return str(row.c_telegram_chat_id or "")
    if channel == "email":  # nothing more goes to an address that bounced or complained
        return "" if row.c_email_status in ("bounced", "complained") else str(row.c_email or "")
    if channel == "viber":
        return str(row.c_viber_user_id or "")
    return str(row.c_phone or "")
