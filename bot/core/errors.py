"""One typed error hierarchy for domain rules and delivery policy.

Domain errors map to HTTP 404/409/422 in one place, `bot.web.errors`; callers that
tell them apart branch on these types, never on their text. Delivery errors are
raised by channel senders and mapped to retry / fallback / failure in one place,
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


class CustomerOptedOut(Conflict):
    """The customer opted out of the channel a message would go on; nothing was queued."""


class NotHeld(Conflict):
    """The message is not held (any more): it was sent, released or closed meanwhile."""


class MessageObsolete(Conflict):
    """A held message that expired or was superseded by a later status of its order; not sent."""


class InvalidInput(DoorstepError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class TooLong(InvalidInput):
    """A text over its length limit (`reason` says the limit)."""


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
    """WhatsApp free-form outside the 24-hour window (Twilio 63016, Meta 131047): use a template or SMS."""


class RecipientUnreachable(DeliveryError):
    """WhatsApp cannot reach this number (not on WhatsApp, an old app: Twilio 63024/63003, Meta 131026):
    another channel (SMS) may."""


class PermanentProviderError(DeliveryError):
    """Never retried: invalid number, bad request, …"""


class ChannelNotConfigured(PermanentProviderError):
    pass
