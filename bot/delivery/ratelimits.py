"""Provider rate limits: spacing per Twilio sender, Telegram bot-wide and per chat."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.core.settings import Settings

TELEGRAM_GLOBAL_RATE = 30.0
TELEGRAM_PER_CHAT_RATE = 1.0


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
