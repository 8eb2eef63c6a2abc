"""The NLU package's only wall-clock read.

`intents/` imports nothing of the service, so it cannot take the service's
clock; callers pass `Context.now` (the service always does). Only a caller that
gives no time at all (offline evaluation, a bare `classify()`) lands here.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from intents.types import Context


def local_now(context: Context) -> datetime:
    """`Context.now` in the context's timezone (the wall clock only when no `now` is given)."""
    try:
        tz = ZoneInfo(context.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    now = context.now
    if now is None:
        return datetime.now(tz)
    if now.tzinfo is None:
        return now.replace(tzinfo=tz)
    return now.astimezone(tz)
