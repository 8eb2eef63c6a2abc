"""The logistics event feed: `GET /api/events?after=CURSOR&limit=N[&status=failed]`.

The same events, with the same ids, as the signed webhooks, oldest first, for
consumers that prefer to pull; each item also says how its webhook delivery
stands (`delivery.status`: pending | sent | failed | dead | expired | feed_only).

The cursor is `feed_cursor`, handed out after commit under one lock
(`assign_cursors`), so it follows commit order: a consumer that stored
cursor N never misses an event that appears later. This module never
changes an event; it only numbers committed ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from bot.core.db import Database
from bot.core.models import LogisticsEvent, Outbox
from bot.store.outbox import event_envelope
from bot.web.deps import ServiceDep

router = APIRouter(prefix="/api/events", tags=["events"])

FAILED_STATUSES = ("failed", "dead", "expired")
# Any constant shared by every Doorstep process on one PostgreSQL ("DOOR" in ASCII).
FEED_LOCK_KEY = 0x444F4F52
ASSIGN_BATCH = 1000
MAX_LIMIT = 500


class Delivery(BaseModel):
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class FeedEvent(BaseModel):
    id: str
    type: str
    created_at: str
    data: dict[str, Any]
    cursor: str
    delivery: Delivery


class FeedPage(BaseModel):
    events: list[FeedEvent]
    next_cursor: str | None
    has_more: bool


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


def feed_item(event: LogisticsEvent, row: Outbox | None) -> FeedEvent:
    from integrations.logistics import delivery_status

    return FeedEvent(**event_envelope(event), cursor=str(event.feed_cursor),
                     delivery=Delivery(**delivery_status(row)))


def parse_cursor(after: str | None) -> int:
    if after in (None, ""):
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > 18:  # "³" is a digit to str.isdigit
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail="after: must be a cursor returned by this feed (digits only)")
    return int(after)


@router.get("", response_model=FeedPage)
def list_events(
    service: ServiceDep,
    after: str | None = Query(None, description="The `next_cursor` (or an event's `cursor`) you stored; omit to start at the beginning."),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    status_: Literal["all", "failed"] = Query("all", alias="status",
                                              description="`failed`: only events whose webhook delivery failed or was dead-lettered."),
) -> FeedPage:
    """The logistics feed, oldest first. Store `next_cursor` and pass it back as `after`."""
    cursor = parse_cursor(after)
    assign_cursors(service.db)
    with service.db.read() as session:
        rows, has_more = read_feed(session, after=cursor, limit=limit, failed_only=status_ == "failed")
        items = [feed_item(event, row) for event, row in rows]
    next_cursor = items[-1].cursor if items else (str(cursor) if cursor else None)
    return FeedPage(events=items, next_cursor=next_cursor, has_more=has_more)


@router.get("/{event_id}", response_model=FeedEvent)
def read_event(event_id: str, service: ServiceDep) -> FeedEvent:
    """One event with its delivery status."""
    assign_cursors(service.db)
    with service.db.read() as session:
        event = session.exec(select(LogisticsEvent).where(LogisticsEvent.id == event_id[:40])).first()
        if event is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
        row = session.exec(select(Outbox).where(Outbox.event_id == event.id, Outbox.kind == "webhook")).first()
        return feed_item(event, row)


@router.post("/{event_id}/redeliver", response_model=FeedEvent)
def redeliver_event(event_id: str, service: ServiceDep) -> FeedEvent:
    """Queue the event's webhook again now, with a fresh retry schedule and the same webhook-id."""
    event, row = redeliver(service.db, event_id)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    return feed_item(event, row)


def redeliver(db: Database, event_id: str) -> tuple[LogisticsEvent | None, Outbox | None]:
    """Re-queue one event's webhook (creating the outbox row if it never had one)."""
    from integrations.logistics import requeue

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
