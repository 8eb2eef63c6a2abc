"""Fixtures for the NLU tests: a frozen clock and contexts built on it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from intents import Context, Expecting

# Wednesday 18 November 2026, 10:00 in Bengaluru.
FROZEN = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata"))


@pytest.fixture
def ctx() -> Context:
    return Context(now=FROZEN, timezone="Asia/Kolkata")


def expecting(what: Expecting, *choices: str) -> Context:
    return Context(expecting=what, choices=choices, now=FROZEN, timezone="Asia/Kolkata")
