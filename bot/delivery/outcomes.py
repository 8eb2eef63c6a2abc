"""What a delivery attempt's result means: retry (with backoff), fall back to another channel, or stop.

The one delivery policy (`outcome_for`), the one channel-fallback rule (`fallback_channel`, used by the
dispatcher when WhatsApp refuses and by the Twilio status callback on 63016) and the one ordering of
provider statuses (`STATUS_RANK`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bot.core.errors import (
    DeliveryError,
    PermanentProviderError,
    RecipientOptedOut,
    RecipientUnreachable,
    RetryAfter,
    WindowClosed,
)
from bot.core.models import Customer
from bot.core.settings import Settings

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
FALLBACK_CHANNEL = {"whatsapp": "sms"}
# Provider statuses in the order they can only move forward ("delivered" never goes back to "sent").
STATUS_RANK = {"scheduled": 0, "accepted": 1, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5}


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | retry | failed | dead | expired | fallback | deferred
    retry_in: float | None = None
    error: str | None = None
    error_code: str | None = None
    opt_out: bool = False


def backoff_seconds(attempt: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Exponential backoff with jitter (attempt 1 -> up to 2 s, 2 -> 4 s, …, at most `cap`)."""
    return float(random.uniform(0.5, 1.0) * min(cap, BACKOFF_BASE_SECONDS * 2 ** min(30, max(0, attempt - 1))))


def outcome_for(exc: Exception, *, attempts: int, max_attempts: int, retry_for: float | None = None,
                give_up_as: str = "dead", backoff_cap: float = BACKOFF_CAP_SECONDS) -> Outcome:
    """The one delivery policy. `retry_for` (seconds left before the row's deadline) makes the
    retries time-based: the attempt count does not matter, the deadline does."""
    if isinstance(exc, RecipientOptedOut):
        return Outcome("failed", error=str(exc), error_code=exc.code, opt_out=True)
    if isinstance(exc, WindowClosed | RecipientUnreachable):
        return Outcome("fallback", error=str(exc), error_code=exc.code)
    if isinstance(exc, PermanentProviderError):
        return Outcome("failed", error=str(exc), error_code=exc.code)
    code = exc.code if isinstance(exc, DeliveryError) else None
    if retry_for is None and attempts >= max_attempts:
        return Outcome("dead", error=f"gave up after {attempts} attempts: {exc}", error_code=code)
    wait = backoff_seconds(attempts, backoff_cap)
    if isinstance(exc, RetryAfter) and exc.seconds is not None:
        wait = max(wait, float(exc.seconds))
    if retry_for is not None and wait >= retry_for:
        # The next try would come too late: an obsolete message is never sent late.
        reason = "obsolete: not delivered in time" if give_up_as == "expired" else "gave up"
        return Outcome(give_up_as, error=f"{reason} after {attempts} attempts: {exc}"[:500], error_code=code)
    return Outcome("retry", retry_in=wait, error=str(exc)[:500] or exc.__class__.__name__, error_code=code)


def fallback_channel(channel: str, customer: Customer | None, settings: Settings) -> str | None:
    """Where a message the provider refused on `channel` may go instead (WhatsApp -> SMS), or None:
    the customer has a number, has not opted out there, and the shop allows the fallback."""
    target = FALLBACK_CHANNEL.get(channel)
    if (target is None or customer is None or not customer.phone or target in customer.opted_out_channels
            or not settings.twilio.whatsapp_sms_fallback):
        return None
    return target


def status_advances(current: str, new: str) -> bool:
    """Whether a provider status report moves a message forward (late or repeated reports do not)."""
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current, -1)
