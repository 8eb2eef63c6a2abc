"""The logistics event feed and its webhook deliveries: cursors, pages, redelivery, a disabled endpoint.

Row operations shared by `GET /api/events`, `doorstep events …` and the webhook sender
(`integrations/logistics.py`). `assign_cursors` and `redeliver` run their own short transactions
(cursors must grow in commit order); the others work on the caller's session.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from bot.core.db import Database, session_now
from bot.core.models import KeyValue, LogisticsEvent, Outbox

# Delay before each try (the first is immediate); len() is the number of tries.
RETRY_DELAYS_SECONDS: tuple[float, ...] = (
    0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
)
MAX_TRIES = len(RETRY_DELAYS_SECONDS)
# Provider id recorded when no endpoint is configured: the event lives in the feed only.
FEED_ONLY = "feed-only"
FAILED_STATUSES = ("failed", "dead", "expired")
# Any constant shared by every Doorstep process on one PostgreSQL ("DOOR" in ASCII).
FEED_LOCK_KEY = 0x444F4F52
ASSIGN_BATCH = 1000


def assign_cursors(db: Database) -> None:
    """Number committed events that have no cursor yet, in one short transaction.

    Under the lock (advisory on PostgreSQL; SQLite's single writer), only
    committed rows are visible, and every batch commits before the next
    starts, so cursors grow in the order events became visible. A read first:
    when every event has its cursor (the usual case), no write lock is taken.
    """
    with db.read() as session:
        if session.exec(select(LogisticsEvent.id).where(col(LogisticsEvent.feed_cursor).is_(None)).limit(1)).first() is None:
            return
    with db.session() as session:
        if db.is_postgres:
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": FEED_LOCK_KEY})
        pending = session.exec(
            select(LogisticsEvent).where(col(LogisticsEvent.feed_cursor).is_(None))
            .order_by(col(LogisticsEvent.seq)).limit(ASSIGN_BATCH)
        ).all()
        if not pending:
            return
        top = session.exec(select(func.max(LogisticsEvent.feed_cursor))).one() or 0
        for offset, event in enumerate(pending, start=1):
            event.feed_cursor = int(top) + offset
            session.add(event)


def read_feed(session: Session, *, after: int = 0, limit: int = 100, failed_only: bool = False
              ) -> tuple[list[tuple[LogisticsEvent, Outbox | None]], bool]:
    """Events after `after`, oldest first, with their webhook outbox row. Returns (items, has_more)."""
    query = (
        select(LogisticsEvent, Outbox)
        .join(Outbox, sa.and_(col(Outbox.event_id) == col(LogisticsEvent.id), col(Outbox.kind) == "webhook"),
              isouter=True)
        .where(col(LogisticsEvent.feed_cursor).is_not(None), col(LogisticsEvent.feed_cursor) > after)
        .order_by(col(LogisticsEvent.feed_cursor))
        .limit(limit + 1)
    )
    if failed_only:
        query = query.where(col(Outbox.status).in_(FAILED_STATUSES))
    rows: list[tuple[LogisticsEvent, Outbox | None]] = [(event, row) for event, row in session.exec(query).all()]
    return rows[:limit], len(rows) > limit


def redeliver(db: Database, event_id: str) -> tuple[LogisticsEvent | None, Outbox | None]:
    """Re-queue one event's webhook (creating the outbox row if it never had one)."""
    with db.session() as session:
        event = session.exec(select(LogisticsEvent).where(LogisticsEvent.id == event_id[:40])).first()
        if event is None:
            return None, None
        row = session.exec(select(Outbox).where(Outbox.event_id == event.id, Outbox.kind == "webhook")
                           .with_for_update()).first()
        if row is None:
            row = Outbox(kind="webhook", event_id=event.id, priority=10)
        requeue(session, row)
        session.flush()
        return event, row


def requeue(session: Session, row: Outbox, now: datetime | None = None) -> None:
    """Give a failed or dead-lettered delivery a fresh schedule (same event, same webhook-id)."""
    now = now or session_now(session)
    row.status = "pending"
    row.attempts = 0
    row.max_attempts = MAX_TRIES
    row.due_at = now
    row.expires_at = now + timedelta(days=4)
    row.claimed_until = None
    row.last_error = None
    row.updated_at = now
    session.add(row)


def delivery_status(row: Outbox | None) -> dict[str, Any]:
    """How the webhook delivery of one event stands, for the feed and the CLI."""
    if row is None:
        return {"status": "none", "attempts": 0, "last_error": None, "next_attempt_at": None, "delivered_at": None}
    status = row.status
    if status == "sent" and row.provider_id == FEED_ONLY:
        status = "feed_only"
    elif status == "sending":
        status = "pending"
    return {
        "status": status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "next_attempt_at": row.due_at.isoformat() if row.status == "pending" else None,
        "delivered_at": row.sent_at.isoformat() if row.sent_at and status == "sent" else None,
    }


def disabled_key(url: str) -> str:
    return "logistics.disabled:" + hashlib.sha256(url.encode()).hexdigest()[:32]


def endpoint_disabled(session: Session, url: str) -> bool:
    return session.get(KeyValue, disabled_key(url)) is not None


def set_endpoint_disabled(session: Session, url: str, disabled: bool, reason: str = "") -> None:
    row = session.get(KeyValue, disabled_key(url))
    if disabled and row is None:
        session.add(KeyValue(key=disabled_key(url), value=reason or "410 Gone", updated_at=session_now(session)))
    elif not disabled and row is not None:
        session.delete(row)
