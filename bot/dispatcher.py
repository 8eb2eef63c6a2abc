"""The dispatcher: sends committed outbox rows, with retries and one failure policy.

Claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer) by moving them to `sending` with a lease, sends them outside any
transaction, and records the outcome. A row whose lease expired while
`sending` (a crash mid-send) is reclaimed; if its sender can reconcile, the
provider is asked first so the ordinary crash does not send twice.

`outcome_for` is the one place that maps delivery errors to retry, fallback
or failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, or_, select

from bot.channels import OutboundMessage, Receipt, Sender, load_factory
from bot.db import Database
from bot.errors import DeliveryError, PermanentProviderError, RecipientOptedOut, RetryAfter, WindowClosed
from bot.models import Customer, Message, Outbox, utcnow
from bot.settings import Settings

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0


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
    status: str  # sent | retry | failed | dead | fallback
    retry_in: float | None = None
    error: str | None = None
    error_code: str | None = None
    opt_out: bool = False


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to 2 s, 2 -> 4 s, …)."""
    return random.uniform(0.5, 1.0) * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))


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


class Dispatcher:
    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 senders: dict[str, Sender] | None = None, worker_id: str | None = None,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._senders: dict[str, Sender] = dict(senders or {})
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.kinds = kinds

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
                message = session.get(Message, row.message_id) if row.message_id else None
                if row.expires_at is not None and row.expires_at <= now:
                    row.status = "expired"
                    row.updated_at = now
                    if message is not None:
                        message.status = "expired"
                        session.add(message)
                    session.add(row)
                    continue
                row.status = "sending"
                row.attempts += 1
                row.claimed_by = self.worker_id
                row.claimed_until = now + LEASE
                row.updated_at = now
                session.add(row)
                outbound = None
                if message is not None:
                    customer = session.get(Customer, message.customer_id) if message.customer_id else None
                    to = _address(customer, message.channel)
                    outbound = OutboundMessage(
                        outbox_id=row.id or 0, message_id=message.id, channel=message.channel, to=to,
                        text=message.text, kind=str(row.payload.get("template") or "reply"),
                        buttons=tuple(tuple(b) for b in row.payload.get("buttons", [])),  # type: ignore[misc]
                        payload=dict(row.payload), attempt=row.attempts,
                    )
                claimed.append(Claimed(row.id or 0, row.kind, row.channel, reclaimed, outbound, dict(row.payload),
                                       row.event_id, row.attempts, row.max_attempts))
        return claimed

    # ------------------------------------------------------------ sending

    async def deliver(self, claimed: Claimed) -> Outcome:
        sender = self.sender_for(self.sender_key(claimed))
        if sender is None:
            outcome = Outcome("failed", error=f"no sender for {self.sender_key(claimed)} (channel not configured)")
            await asyncio.to_thread(self.record, claimed, outcome, None)
            return outcome
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
        await asyncio.to_thread(self.record, claimed, outcome, receipt)
        return outcome

    def record(self, claimed: Claimed, outcome: Outcome, receipt: Receipt | None) -> None:
        now = self.clock()
        with self.db.session() as session:
            row = session.get(Outbox, claimed.row_id)
            if row is None:
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
            elif outcome.status == "retry":
                row.status = "pending"
                row.due_at = now + timedelta(seconds=outcome.retry_in or 1)
                row.last_error = outcome.error
            else:  # failed | dead | fallback (a channel module registers its own fallback sender key)
                row.status = "failed" if outcome.status != "dead" else "dead"
                row.last_error = outcome.error
                if message is not None:
                    message.status = "failed"
                    message.error = (outcome.error or "")[:500]
                    message.error_code = outcome.error_code
                    if outcome.opt_out and message.customer_id:
                        customer = session.get(Customer, message.customer_id)
                        if customer is not None and message.channel not in customer.opted_out_channels:
                            customer.opted_out_channels = sorted({*customer.opted_out_channels, message.channel})
                            session.add(customer)
            session.add(row)
            if message is not None:
                session.add(message)

    async def run_once(self, limit: int = 50) -> int:
        claimed = await asyncio.to_thread(self.claim, limit)
        for item in claimed:
            await self.deliver(item)
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, *, idle_sleep: float = 0.5) -> None:
        while not stop.is_set():
            try:
                count = await self.run_once()
            except Exception:
                log.exception("dispatcher iteration failed; retrying")
                count = 0
            if count == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=idle_sleep)
                except TimeoutError:
                    pass


def _address(customer: Customer | None, channel: str) -> str:
    if customer is None:
        return ""
    if channel == "telegram":
        return customer.telegram_chat_id or ""
    return customer.phone or ""
