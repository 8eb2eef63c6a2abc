"""The one place Doorstep reads the wall clock.

Everything that stamps or compares a time takes it from an injected clock (the
service's `Runtime.clock`, which is also the database's clock, so rows written
by a request and the messages of the same turn share one timeline). Tests
replace the clock to travel in time; a direct `datetime.now()` elsewhere would
put a second, real timeline into the data. `tests/core/test_wall_clock.py`
fails on any wall-clock read outside this module (and `intents/clock.py`, the
NLU package's own, used only when a caller gives no time).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Aware UTC now: the production clock, and the default of every `Clock` slot."""
    return datetime.now(UTC)


class FakeClock:
    """An injectable, manually advanced clock (`Service.create(clock=FakeClock(...))`):
    tests and `doorstep simulate` run days of journeys in milliseconds."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.current = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        self.current = self.current + delta
        return self.current

    def set(self, when: datetime) -> datetime:
        self.current = when.astimezone(UTC)
        return self.current
