"""Logistics webhooks out: the `webhook` outbox sender (Standard Webhooks).

Each logistics event (`bot.store.outbox.emit_event`) is POSTed to
`LOGISTICS_WEBHOOK_URL` as the `event_envelope` JSON, signed with the
reference `standardwebhooks` library (`webhook-id` = the event id on every
try, `webhook-timestamp`, `webhook-signature: v1,<base64>`).

Delivery policy, imposed on the dispatcher through `RetryAfter(seconds)`:
immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (with
±10 % jitter); a 2xx ends it; 410 disables the endpoint (stored in `kv`,
keyed by the URL, so a new URL is enabled again); 429/5xx honour
`Retry-After`; after the last try the dispatcher dead-letters the row
(`outbox.status = "dead"`), which `doorstep events redeliver ID` re-queues.

Every try goes through the one URL guard (bot/core/urlguard.py): never to a
metadata, link-local or reserved address, nor to a loopback or private one
unless `LOGISTICS_ALLOW_PRIVATE_ADDRESSES` or `DOORSTEP_ALLOW_PRIVATE_URLS`
is true. A refused URL fails loudly (an error log naming the setting, and
`doorstep_logistics_webhook_deliveries_total{outcome="refused"}`), because the
customer has been told the courier knows. This module never logs the secret
or the URL's query, and never writes outbox state itself (the dispatcher
records outcomes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx
from sqlmodel import select

from bot.core import metrics
from bot.core.channels import Receipt
from bot.core.db import Database, session_now
from bot.core.errors import PermanentProviderError, RetryAfter
from bot.core.models import LogisticsEvent
from bot.core.urlguard import GuardedTransport, HostNotResolved, UnsafeURL, redacted
from bot.store.feed import (
    FEED_ONLY,
    MAX_TRIES,
    RETRY_DELAYS_SECONDS,
    endpoint_disabled,
    set_endpoint_disabled,
)
from bot.store.outbox import event_envelope

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from bot.delivery.dispatcher import Claimed

log = logging.getLogger(__name__)

JITTER = 0.1
# A Retry-After beyond a day is treated as a day: the event must still arrive within the schedule's span.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
REQUEST_TIMEOUT_SECONDS = 10.0
USER_AGENT = "Doorstep-Webhooks/1"


_DATABASES: dict[str, Database] = {}


def sender_database(settings: Settings) -> Database:
    """Senders get only settings: share one engine per database URL per process, never one per sender."""
    url = settings.database_url
    if url not in _DATABASES:
        _DATABASES[url] = Database(url)
    return _DATABASES[url]


def next_delay(tries_done: int) -> float:
    """Seconds to wait after try number `tries_done` failed (1-based), with jitter."""
    base = RETRY_DELAYS_SECONDS[min(tries_done, MAX_TRIES - 1)]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """The `Retry-After` header as seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(1.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def signed_request(event: LogisticsEvent, secret: str, *, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The exact body bytes and headers of one try, signed with the reference library."""
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(event_envelope(event), separators=(",", ":"), ensure_ascii=False)
    timestamp = now.astimezone(UTC)
    signature = Webhook(secret).sign(msg_id=event.id, timestamp=timestamp, data=body)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


class LogisticsWebhookSender:
    """The dispatcher's sender for outbox rows of kind `webhook`."""

    def __init__(self, settings: Settings, *, db: Database | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._db = db
        self._transport = transport

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = sender_database(self.settings)
        return self._db

    def _load(self, event_id: str | None) -> tuple[LogisticsEvent | None, bool]:
        url = self.settings.logistics.webhook_url
        with self.db.session() as session:
            event = session.exec(select(LogisticsEvent).where(LogisticsEvent.id == event_id)).first() if event_id else None
            return event, bool(url) and endpoint_disabled(session, url)

    def _disable(self, url: str) -> None:
        with self.db.session() as session:
            set_endpoint_disabled(session, url, True, f"410 Gone at {session_now(session).isoformat()}")

    async def send(self, claimed: Claimed) -> Receipt:
        """One try; counts its outcome (delivered, retry, failed, refused, dead) in /metrics."""
        try:
            receipt = await self._send(claimed)
        except RetryAfter as exc:
            last_try = claimed.attempts >= claimed.max_attempts
            outcome = "dead" if last_try else "retry"
            if last_try:
                log.error("logistics webhook dead-lettered after %s tries (%s); the logistics system was NOT told; "
                          "`doorstep events redeliver` re-queues it", claimed.attempts, exc)
            metrics.LOGISTICS_WEBHOOKS.labels(outcome).inc()
            raise
        except PermanentProviderError as exc:
            outcome = "refused" if isinstance(exc.__cause__, UnsafeURL) else "failed"
            log.error("logistics webhook failed for good (%s); the logistics system was NOT told; "
                      "fix it, then `doorstep events redeliver`", exc)
            metrics.LOGISTICS_WEBHOOKS.labels(outcome).inc()
            raise
        metrics.LOGISTICS_WEBHOOKS.labels("feed_only" if receipt.provider_id == FEED_ONLY else "delivered").inc()
        return receipt

    async def _send(self, claimed: Claimed) -> Receipt:
        event, disabled = await asyncio.to_thread(self._load, claimed.event_id)
        if event is None:
            raise PermanentProviderError("logistics event not found")
        url = self.settings.logistics.webhook_url
        if not url:
            return Receipt(provider_id=FEED_ONLY, detail="no LOGISTICS_WEBHOOK_URL; event is in the feed only")
        if disabled:
            raise PermanentProviderError("logistics endpoint disabled after 410 Gone; `doorstep events enable` re-enables it")
        secret = self.settings.logistics.webhook_secret.get_secret_value()
        if not secret:
            raise PermanentProviderError("LOGISTICS_WEBHOOK_SECRET is not set; refusing to send unsigned webhooks")
        try:
            body, headers = signed_request(event, secret, now=self.db.clock())
        except Exception as exc:  # a malformed secret is a configuration error, not a transient one
            raise PermanentProviderError("LOGISTICS_WEBHOOK_SECRET is not a valid whsec_<base64> secret") from exc
        tries_done = claimed.attempts
        allow_private = self.settings.logistics.allow_private_addresses or self.settings.allow_private_urls
        transport = GuardedTransport(setting="LOGISTICS_WEBHOOK_URL", allow_private=allow_private,
                                     inner=self._transport)
        try:
            # Redirects are not followed: the receiver must answer at the configured URL.
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False,
                                         transport=transport) as client:
                response = await client.post(url, content=body, headers=headers)
        except UnsafeURL as exc:
            # Retrying a configuration mistake helps nobody.
            raise PermanentProviderError(f"{exc} ({redacted(url)})") from exc
        except HostNotResolved:
            raise RetryAfter(next_delay(tries_done), "LOGISTICS_WEBHOOK_URL host did not resolve") from None
        except httpx.HTTPError as exc:
            log.info("webhook %s try %s failed: %s", event.id, tries_done, exc.__class__.__name__)
            raise RetryAfter(next_delay(tries_done), f"endpoint unreachable ({exc.__class__.__name__})") from None
        status = response.status_code
        if 200 <= status < 300:
            log.info("webhook %s delivered on try %s (%s)", event.id, tries_done, status)
            return Receipt(provider_id=f"http-{status}", detail=f"try {tries_done}")
        if status == 410:
            await asyncio.to_thread(self._disable, url)
            log.warning("logistics endpoint answered 410 Gone; disabled until re-enabled")
            raise PermanentProviderError("endpoint answered 410 Gone; endpoint disabled", code="410")
        delay = next_delay(tries_done)
        if status == 429 or status >= 500:
            hinted = retry_after_seconds(response, self.db.clock())
            if hinted is not None:
                delay = hinted
        if 400 <= status < 500 and status != 429:
            log.warning("logistics endpoint %s refused webhook %s with HTTP %s; retrying", redacted(url), event.id, status)
        else:
            log.info("webhook %s try %s got HTTP %s; next try in %.0f s", event.id, tries_done, status, delay)
        raise RetryAfter(delay, f"endpoint answered HTTP {status}", code=str(status))


def make_sender(settings: Settings) -> LogisticsWebhookSender:
    return LogisticsWebhookSender(settings)


