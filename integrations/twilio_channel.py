"""Twilio SMS and WhatsApp sender: the real `twilio` client, one error map, crash reconciliation.

Requests go out on the event loop: twilio's own aiohttp client
(`AsyncTwilioHttpClient`, `create_async` / `list_async`) with one pooled
session per sender and event loop, closed by `aclose`, so a send costs no
thread hop and reuses its keep-alive connection. `TWILIO_API_BASE_URL`
rewrites the scheme and host of *every* Twilio URL (api, messaging,
content, …) while keeping the path, so one fake server on loopback, or a
forwarding proxy, sees every call.

WhatsApp free-form text may only go out within 24 hours of the customer's
last inbound WhatsApp message (the dispatcher computes that and passes it in
the payload). Outside the window the approved template (Content SID per
message kind, `TWILIO_WHATSAPP_TEMPLATES`) is used, or `WindowClosed` is
raised and the dispatcher falls back to SMS.

This module never writes to the database and never logs phone numbers or
message text.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bot.core.channels import OutboundMessage, Receipt
from bot.core.errors import (
    ChannelNotConfigured,
    PermanentProviderError,
    RecipientOptedOut,
    RetryAfter,
    WindowClosed,
)
from bot.core.gsm7 import sms_text
from bot.core.settings import Settings, TwilioSettings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 100  # per sender and event loop: the dispatcher's concurrent sends share them
MAX_VALIDITY_SECONDS = 36000  # Twilio's ValidityPeriod upper bound (10 h)
OPTED_OUT_CODES = {"21610"}
WINDOW_CODES = {"63016"}
# Invalid or unreachable recipient / sender: retrying cannot help.
PERMANENT_CODES = {"21211", "21212", "21408", "21612", "21614", "21606", "21617", "21660", "63003", "63024"}
RATE_LIMIT_CODES = {"20429", "14107"}
_STATUS_FROM_TWILIO = {"accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "sent",
                       "sent": "sent", "delivered": "delivered", "read": "read"}


def _twilio_http_client(base_url: str) -> Any:
    """twilio's aiohttp client with one pooled session (keep-alive, at most `MAX_CONNECTIONS`), made
    on the running event loop; with `base_url`, every Twilio URL goes there instead."""
    import aiohttp
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    class PooledHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
        def __init__(self, base: str) -> None:
            super().__init__(pool_connections=False, timeout=REQUEST_TIMEOUT_SECONDS)
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS))
            parts = urlsplit(base.rstrip("/")) if base else None
            self._rewrite = (parts.scheme, parts.netloc, parts.path) if parts else None

        async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            if self._rewrite and parts.hostname and parts.hostname.endswith("twilio.com"):
                scheme, netloc, prefix = self._rewrite
                url = urlunsplit((scheme, netloc, prefix + parts.path, parts.query, ""))
            # twilio passes timeout=None per request, which aiohttp reads as "no timeout".
            kwargs["timeout"] = kwargs.get("timeout") or self.timeout
            return await super().request(method, url, *args, **kwargs)

    return PooledHttpClient(base_url)


def _import_twilio() -> None:
    for name in ("twilio.rest", "twilio.rest.api.v2010.account.message", "twilio.http.async_http_client"):
        importlib.import_module(name)


def map_twilio_error(exc: Exception) -> Exception:
    """Map a twilio/aiohttp exception to one of bot.core.errors' delivery errors."""
    import aiohttp
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        code = str(exc.code) if exc.code is not None else None
        reason = f"Twilio {exc.status} error {code or '-'}"
        if code in OPTED_OUT_CODES:
            return RecipientOptedOut(reason + ": recipient opted out", code=code)
        if code in WINDOW_CODES:
            return WindowClosed(reason + ": outside the WhatsApp 24-hour window", code=code)
        if exc.status == 429 or code in RATE_LIMIT_CODES:
            return RetryAfter(None, reason + ": rate limited", code=code or "429")
        if exc.status >= 500:
            return RetryAfter(None, reason + ": provider unavailable", code=code or str(exc.status))
        if code in PERMANENT_CODES or 400 <= exc.status < 500:
            return PermanentProviderError(reason + ": request refused", code=code or str(exc.status))
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        return RetryAfter(None, "Twilio request timed out", code="timeout")
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return RetryAfter(None, "Twilio unreachable", code="connection")
    return exc


class TwilioSender:
    """Sends `sms` and `whatsapp` outbox messages through Twilio's Messages API."""

    def __init__(self, settings: Settings, channel: str) -> None:
        self.channel = channel
        self.config: TwilioSettings = settings.twilio
        self._clients: dict[int, tuple[Any, Any]] = {}  # event loop id -> (twilio Client, its HTTP client)

    @property
    def client(self) -> Any:
        """The twilio Client of the running event loop (aiohttp's session belongs to the loop that made it)."""
        from twilio.rest import Client

        loop_id = id(asyncio.get_running_loop())
        made = self._clients.get(loop_id)
        if made is None:
            http = _twilio_http_client(self.config.api_base_url)
            made = (Client(self.config.account_sid, self.config.auth_token.get_secret_value(), http_client=http), http)
            # Forget clients of loops that are gone (tests and `doorstep chat` run several loops).
            self._clients = {loop_id: made}
        return made[0]

    async def aclose(self) -> None:
        """Close the pooled connections of the running loop's client (they reopen if used again)."""
        made = self._clients.pop(id(asyncio.get_running_loop()), None)
        if made is not None:
            await made[1].close()

    def _from(self) -> str:
        sender = self.config.whatsapp_from if self.channel == "whatsapp" else self.config.sms_from
        if not self.config.configured or not sender:
            variable = "TWILIO_WHATSAPP_FROM" if self.channel == "whatsapp" else "TWILIO_SMS_FROM"
            raise ChannelNotConfigured(f"{self.channel} is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, {variable})")
        return _whatsapp(sender) if self.channel == "whatsapp" else sender

    def _to(self, message: OutboundMessage) -> str:
        if not message.to:
            raise PermanentProviderError("the customer has no phone number", code="no-recipient")
        return _whatsapp(message.to) if self.channel == "whatsapp" else message.to

    def build_params(self, message: OutboundMessage) -> dict[str, Any]:
        """The Messages.create keyword arguments for one outbound message."""
        params: dict[str, Any] = {"to": self._to(message), "from_": self._from()}
        if self.channel == "whatsapp" and not message.payload.get("whatsapp_window_open", True):
            content_sid = self.config.whatsapp_templates.get(message.kind) or self.config.whatsapp_templates.get("*")
            if not content_sid:
                raise WindowClosed("outside the WhatsApp 24-hour window and no template for "
                                   f"{message.kind!r}", code="window")
            variables = message.payload.get("template_vars") or {"1": message.text}
            params["content_sid"] = content_sid
            params["content_variables"] = json.dumps({str(k): str(v) for k, v in variables.items()})
        else:
            params["body"] = self.body(message)
        if self.config.status_callback_url:
            params["status_callback"] = self.config.status_callback_url
        validity = message.payload.get("validity_seconds")
        if validity:
            # Twilio drops the message instead of delivering it late.
            params["validity_period"] = max(1, min(MAX_VALIDITY_SECONDS, int(validity)))
        return params

    def body(self, message: OutboundMessage) -> str:
        """The text as sent: on SMS typographic punctuation is made plain so the text can stay
        GSM-7 (160 characters a part, not 70); dynamic values such as product names bring it in."""
        return sms_text(message.text) if self.channel == "sms" else message.text

    async def send(self, message: OutboundMessage) -> Receipt:
        params = self.build_params(message)
        try:
            created = await self.client.messages.create_async(**params)
        except Exception as exc:
            raise map_twilio_error(exc) from None
        status = _STATUS_FROM_TWILIO.get(str(created.status or "queued"), "queued")
        return Receipt(provider_id=created.sid, status=status, detail="template" if "content_sid" in params else "")

    async def prepare(self) -> None:
        """Import twilio's API modules (in a thread: seconds on a small machine) and build this loop's
        client before a rate-limit slot is taken (bot.core.channels.Preparable), so first sends do not
        reach the provider in one burst after the import."""
        if id(asyncio.get_running_loop()) not in self._clients:
            await asyncio.to_thread(_import_twilio)
            _ = self.client.messages

    async def reconcile(self, message: OutboundMessage) -> Receipt | None:
        """After a crash mid-send: did Twilio already accept this text for this recipient?"""
        since_raw = message.payload.get("claimed_since")
        from twilio.base import values

        # Without the claim time (an old row), the 50 newest messages to this recipient are searched.
        since = datetime.fromisoformat(since_raw) - timedelta(seconds=5) if since_raw else values.unset
        # Ids the dispatcher already recorded for other rows: a message with the same text sent for
        # another row is not this row's (matching it would give two rows one Twilio message).
        taken = set(message.payload.get("taken_provider_ids") or ())
        try:
            candidates = await self.client.messages.list_async(to=self._to(message), from_=self._from(),
                                                   date_sent_after=since, limit=50)
        except Exception as exc:
            raise map_twilio_error(exc) from None
        sent_body = self.body(message)  # Twilio stores what was sent (GSM-7 cleaned), not the outbox text
        # Twilio lists newest first; a customer has one message in flight, so the oldest untaken
        # match is the one this row sent.
        for candidate in reversed(list(candidates)):
            if candidate.sid in taken or (candidate.body or "") != sent_body:
                continue
            log.info("reconciled outbox=%s: Twilio already accepted it", message.outbox_id)
            return Receipt(provider_id=candidate.sid,
                           status=_STATUS_FROM_TWILIO.get(str(candidate.status or "queued"), "queued"),
                           detail="reconciled")
        return None


def _whatsapp(number: str) -> str:
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def make_sms_sender(settings: Settings) -> TwilioSender:
    return TwilioSender(settings, "sms")


def make_whatsapp_sender(settings: Settings) -> TwilioSender:
    return TwilioSender(settings, "whatsapp")
