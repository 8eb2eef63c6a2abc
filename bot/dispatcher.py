"""The dispatcher: sends committed outbox rows, with retries, rate limits and one failure policy.

Claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer) by moving them to `sending` with a lease, sends them outside any
transaction, and records the outcome (and the provider's id) at once.

No double sends. A row is only sent by the worker holding its lease. A row
whose lease expired while `sending` (the worker crashed after claiming it)
is reclaimed; if its sender can reconcile (Twilio: list the messages sent to
that number since the claim and match the text), the provider is asked first,
so the ordinary crash does not send twice. The window that remains: a crash
after the provider accepted a message and before `record` committed, on a
channel that cannot reconcile (Telegram), or a Twilio template message, sends
it once more after the lease (60 s) expires.

Rate limits, per process: Telegram 30 messages/s in all and 1/s per chat;
Twilio `TWILIO_SMS_RATE_PER_SECOND` / `TWILIO_WHATSAPP_RATE_PER_SECOND` per
sender. A message that would wait more than `MAX_INLINE_WAIT` is put back
with a later `due_at` instead of holding its lease.

Before sending: an expired row (`expires_at`, the ValidityPeriod) becomes
`expired`; a proactive message (priority above replies) to a customer who
opted out of that channel becomes `cancelled`. WhatsApp rows carry whether the
24-hour window is open; `WindowClosed` falls back to SMS.

`outcome_for` is the one place that maps delivery errors to retry, fallback
or failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, or_, select

from bot.channels import OutboundMessage, Receipt, Sender, load_factory
from bot.clock import Clock, system_clock
from bot.db import Database
from bot.errors import DeliveryError, PermanentProviderError, RecipientOptedOut, RetryAfter, WindowClosed
from bot.models import Customer, Message, Outbox
from bot.outbox import PRIORITY_REPLY
from bot.settings import Settings

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
WHATSAPP_WINDOW = timedelta(hours=24)
MAX_INLINE_WAIT = 2.0  # seconds a rate-limited message may wait while holding its lease
TELEGRAM_GLOBAL_RATE = 30.0
TELEGRAM_PER_CHAT_RATE = 1.0
FALLBACK_CHANNEL = {"whatsapp": "sms"}


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


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | retry | failed | dead | fallback | deferred
    retry_in: float | None = None
    error: str | None = None
    error_code: str | None = None
    opt_out: bool = False


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to 2 s, 2 -> 4 s, …)."""
    return float(random.uniform(0.5, 1.0) * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1)))


def outcome_for(exc: Exception, *, attempts: int, max_attempts: int) -> Outcome:
    if isinstance(exc, RecipientOptedOut):
        return Outcome("failed", error=str(exc), error_code=exc.code, opt_out=True)
    if isinstance(exc, WindowClosed):
        return Outcome("fallback", error=str(exc), error_code=exc.code)
    if isinstance(exc, PermanentProviderError):
        return Outcome("failed", error=str(exc), error_code=exc.code)
    code = exc.code if isinstance(exc, DeliveryError) else None
    if attempts >= max_attempts:
        return Outcome("dead", error=f"gave up after {attempts} attempts: {exc}", error_code=code)
    wait = backoff_seconds(attempts)
    if isinstance(exc, RetryAfter) and exc.seconds is not None:
        wait = max(wait, float(exc.seconds))
    return Outcome("retry", retry_in=wait, error=str(exc)[:500] or exc.__class__.__name__, error_code=code)


# ---------------------------------------------------------------- rate limits


@dataclass
class RateLimiter:
    """Spacing-based limiter: each key gets one slot every 1/rate seconds (per process)."""

    clock: Callable[[], float] = time.monotonic
    _next: dict[Any, float] = field(default_factory=dict)

    def wait_for(self, limits: list[tuple[Any, float]]) -> float:
        now = self.clock()
        return float(max([0.0, *(self._next.get(key, now) - now for key, _ in limits)]))

    def take(self, limits: list[tuple[Any, float]]) -> float:
        """Reserve a slot on every key; returns how long to wait before sending."""
        now = self.clock()
        wait = self.wait_for(limits)
        start = now + wait
        for key, rate in limits:
            self._next[key] = start + 1.0 / rate
        return wait

    def finished(self, limits: list[tuple[Any, float]]) -> None:
        """Count the spacing from when the provider answered: a slow first request (connection
        setup) must not let the next one arrive less than 1/rate after it."""
        done = self.clock()
        for key, rate in limits:
            self._next[key] = max(self._next.get(key, done), done + 1.0 / rate)


def channel_limits(settings: Settings, channel: str | None, to: str) -> list[tuple[Any, float]]:
    if channel == "telegram":
        return [("telegram", TELEGRAM_GLOBAL_RATE), (("telegram", to), TELEGRAM_PER_CHAT_RATE)]
    if channel == "sms":
        return [("sms", settings.twilio.sms_rate_per_second)]
    if channel == "whatsapp":
        return [("whatsapp", settings.twilio.whatsapp_rate_per_second)]
    return []


# ---------------------------------------------------------------- wake-up

_wake_lock = threading.Lock()
_wake_events: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


def notify() -> None:
    """Wake every dispatcher of this process now (called after new outbox rows commit)."""
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
        self.limiter = RateLimiter()

    # ------------------------------------------------------------ senders

    def sender_for(self, key: str) -> Sender | None:
        if key not in self._senders:
            factory = load_factory(key)
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
            query = (
                select(Outbox)
                .where(or_(
                    (col(Outbox.status) == "pending") & (col(Outbox.due_at) <= now),
                    (col(Outbox.status) == "sending") & (col(Outbox.claimed_until) < now),
                ))
                .order_by(col(Outbox.priority), col(Outbox.due_at), col(Outbox.id))
                .limit(limit)
                .with_for_update(**self.db.skip_locked())
            )
            if self.kinds:
                query = query.where(col(Outbox.kind).in_(self.kinds))
            for row in session.exec(query).all():
                reclaimed = row.status == "sending"
                previous_claim = (row.claimed_until - LEASE) if reclaimed and row.claimed_until else None
                message = session.get(Message, row.message_id) if row.message_id else None
                customer = session.get(Customer, row.customer_id) if row.customer_id else None
                if row.expires_at is not None and row.expires_at <= now:
                    self._close(session, row, message, "expired", now, "expired before it could be sent")
                    continue
                if (message is not None and customer is not None and row.priority > PRIORITY_REPLY
                        and message.channel in customer.opted_out_channels):
                    # Proactive message to someone who opted out of this channel: never send it.
                    self._close(session, row, message, "cancelled", now, "recipient opted out")
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
                        payload["whatsapp_window_open"] = _whatsapp_window_open(session, message.customer_id, now)
                    outbound = OutboundMessage(
                        outbox_id=row.id or 0, message_id=message.id, channel=message.channel,
                        to=_address(customer, message.channel), text=message.text,
                        kind=str(row.payload.get("template") or "reply"),
                        buttons=tuple((str(b[0]), str(b[1])) for b in row.payload.get("buttons", [])),
                        payload=payload, attempt=row.attempts,
                    )
                claimed.append(Claimed(row.id or 0, row.kind, message.channel if message else row.channel, reclaimed,
                                       outbound, dict(row.payload), row.event_id, row.attempts, row.max_attempts))
        return claimed

    @staticmethod
    def _close(session: Session, row: Outbox, message: Message | None, status: str, now: datetime, reason: str) -> None:
        row.status = status
        row.updated_at = now
        row.claimed_until = None
        row.last_error = reason
        session.add(row)
        if message is not None:
            message.status = status
            message.error = reason
            session.add(message)

    # ------------------------------------------------------------ sending

    async def deliver(self, claimed: Claimed) -> Outcome:
        sender = self.sender_for(self.sender_key(claimed))
        if sender is None:
            outcome = Outcome("failed", error=f"no sender for {self.sender_key(claimed)} (channel not configured)")
            await asyncio.to_thread(self.record, claimed, outcome, None)
            return outcome
        limits = channel_limits(self.settings, claimed.channel, claimed.message.to if claimed.message else "")
        if limits:
            wait = self.limiter.wait_for(limits)
            if wait > MAX_INLINE_WAIT:
                outcome = Outcome("deferred", retry_in=wait)
                await asyncio.to_thread(self.record, claimed, outcome, None)
                return outcome
            await asyncio.sleep(self.limiter.take(limits))
        receipt: Receipt | None = None
        try:
            if claimed.reclaimed and claimed.message is not None and hasattr(sender, "reconcile"):
                receipt = await sender.reconcile(claimed.message)
            if receipt is None:
                receipt = await sender.send(claimed.message if claimed.message is not None else claimed)  # type: ignore[arg-type]
            outcome = Outcome("sent")
        except Exception as exc:  # every failure is mapped; nothing escapes the loop
            if not isinstance(exc, DeliveryError):
                log.warning("send failed outbox=%s kind=%s: %s", claimed.row_id, claimed.kind, exc.__class__.__name__)
            outcome = outcome_for(exc, attempts=claimed.attempts, max_attempts=claimed.max_attempts)
        finally:
            if limits:
                self.limiter.finished(limits)
        await asyncio.to_thread(self.record, claimed, outcome, receipt)
        return outcome

    def record(self, claimed: Claimed, outcome: Outcome, receipt: Receipt | None) -> None:
        now = self.clock()
        with self.db.session() as session:
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
            if outcome.status == "sent":
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
                row.last_error = outcome.error
            elif outcome.status == "fallback" and message is not None and self._fall_back(session, row, message, outcome):
                pass
            else:  # failed | dead | fallback impossible
                row.status = "failed" if outcome.status != "dead" else "dead"
                row.last_error = outcome.error
                if message is not None:
                    message.status = "failed"
                    message.error = (outcome.error or "")[:500]
                    message.error_code = outcome.error_code
                    if outcome.opt_out and message.customer_id:
                        mark_opted_out(session, message.customer_id, message.channel)
            session.add(row)
            if message is not None:
                session.add(message)

    def _fall_back(self, session: Session, row: Outbox, message: Message, outcome: Outcome) -> bool:
        """WhatsApp refused (window closed): send the same message by SMS instead, if we may."""
        target = FALLBACK_CHANNEL.get(message.channel)
        customer = session.get(Customer, message.customer_id) if message.customer_id else None
        if (target is None or customer is None or not customer.phone or target in customer.opted_out_channels
                or not self.settings.twilio.whatsapp_sms_fallback):
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
        claimed = await asyncio.to_thread(self.claim, limit)
        # One lane per recipient: a customer's messages go out in order, different customers in parallel.
        lanes: dict[tuple[str, str | None, str], list[Claimed]] = {}
        for item in claimed:
            lane = (item.kind, item.channel, item.message.to if item.message else str(item.row_id))
            lanes.setdefault(lane, []).append(item)

        started = time.monotonic()

        async def drain(items: list[Claimed]) -> None:
            for item in items:
                if time.monotonic() - started > LEASE.total_seconds() / 2:
                    # A long rate-limited lane must not outlive its lease (another worker would reclaim it).
                    await asyncio.to_thread(self.record, item, Outcome("deferred", retry_in=0.0), None)
                    continue
                await self.deliver(item)

        await asyncio.gather(*(drain(items) for items in lanes.values()))
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, *, idle_sleep: float = 0.5) -> None:
        wake = asyncio.Event()
        entry = (asyncio.get_running_loop(), wake)
        with _wake_lock:
            _wake_events.add(entry)
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


def mark_opted_out(session: Session, customer_id: int, channel: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None and channel not in customer.opted_out_channels:
        customer.opted_out_channels = sorted({*customer.opted_out_channels, channel})
        session.add(customer)


def _whatsapp_window_open(session: Session, customer_id: int | None, now: datetime) -> bool:
    if customer_id is None:
        return False
    last = session.exec(select(func.max(Message.created_at)).where(
        Message.customer_id == customer_id, Message.direction == "in", Message.channel == "whatsapp")).first()
    if last is None:
        return False
    if last.tzinfo is None:  # func.max bypasses the UTCDateTime type on SQLite
        from datetime import UTC

        last = last.replace(tzinfo=UTC)
    return bool(now - last < WHATSAPP_WINDOW)


def _address(customer: Customer | None, channel: str) -> str:
    if customer is None:
        return ""
    if channel == "telegram":
        return customer.telegram_chat_id or ""
    return customer.phone or ""
