"""What the conversation engine needs from the running service: time zone, shop config, clock, classifier.

Tests inject the clock and the classifier; `Service.create` builds the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.core.clock import Clock, system_clock
from intents import Classification, Context, classify, get_model


@dataclass
class Runtime:
    """What the engine needs from the running service; tests inject the clock."""

    timezone: str = "UTC"
    shop_config: dict[str, Any] = field(default_factory=dict)
    clock: Clock = system_clock
    classifier: Callable[[str, Context], Classification] = classify
    # Loads (or trains, once per process) the intent model. Called before a message's
    # transaction opens, never inside it: training there held SQLite's write lock for seconds.
    warm_up: Callable[[], object] = get_model

    def now(self) -> datetime:
        return self.clock()
