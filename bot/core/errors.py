"""One typed error hierarchy for domain rules and delivery policy.

Domain errors map to HTTP 404/409/422 in bot.web.routes; delivery errors are raised
by channel senders and mapped to retry / fallback / failure in one place,
`bot.delivery.outcomes.outcome_for`.
"""

from __future__ import annotations

# The root, defined in the lowest package so that flows/ and intents/ raise under it too.
from intents.errors import DoorstepError as DoorstepError

# ------------------------------------------------------------------ domain


class NotFound(DoorstepError):
    pass


class Conflict(DoorstepError):
    """A request that contradicts the current state (e.g. delivered -> shipped)."""


class InvalidInput(DoorstepError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# ---------------------------------------------------------------- delivery


class DeliveryError(DoorstepError):
    """Raised by a sender; `code` is the provider's error code when it has one."""

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.code = code


class RetryAfter(DeliveryError):
    """Transient: try again after `seconds` (429, 5xx, timeouts)."""

    def __init__(self, seconds: float | None = None, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or "temporary provider failure", code=code)
        self.seconds = seconds


class RecipientOptedOut(DeliveryError):
    """The recipient opted out at the provider (Twilio 21610, Telegram 403 blocked)."""


class WindowClosed(DeliveryError):
    """WhatsApp free-form outside the 24-hour window (Twilio 63016): use a template or SMS."""


class PermanentProviderError(DeliveryError):
    """Never retried: invalid number, bad request, …"""


class ChannelNotConfigured(PermanentProviderError):
    pass
