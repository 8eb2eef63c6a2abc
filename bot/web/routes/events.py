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

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlmodel import select

from bot.core.errors import NotFound
from bot.core.models import LogisticsEvent, Outbox
from bot.store.feed import assign_cursors, delivery_status, read_feed, redeliver
from bot.store.outbox import event_envelope
from bot.web.deps import ServiceDep

router = APIRouter(prefix="/api/events", tags=["events"])

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


def feed_item(event: LogisticsEvent, row: Outbox | None) -> FeedEvent:
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
            raise NotFound("no such event")
        row = session.exec(select(Outbox).where(Outbox.event_id == event.id, Outbox.kind == "webhook")).first()
        return feed_item(event, row)


@router.post("/{event_id}/redeliver", response_model=FeedEvent)
def redeliver_event(event_id: str, service: ServiceDep) -> FeedEvent:
    """Queue the event's webhook again now, with a fresh retry schedule and the same webhook-id."""
    event, row = redeliver(service.db, event_id)
    if event is None:
        raise NotFound("no such event")
    return feed_item(event, row)


