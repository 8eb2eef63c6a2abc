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
message kind and locale, chosen by the send planner with its variables, or an
operator's SID from `TWILIO_WHATSAPP_TEMPLATES`) is used, or `WindowClosed` is
raised and the dispatcher falls back to SMS.

This module never writes to the database and never logs phone numbers or
message text.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bot.core import choices, replies
from bot.core.channels import OutboundMessage, Receipt
from bot.core.errors import (
    ChannelNotConfigured,
    PermanentProviderError,
    RecipientOptedOut,
    RecipientUnreachable,
    RetryAfter,
    WindowClosed,
)
from bot.core.gsm7 import sms_text
from bot.core.settings import Settings, TwilioSettings
from bot.core.whatsapp_templates import sanitize

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 100  # per sender and event loop: the dispatcher's concurrent sends share them
MAX_VALIDITY_SECONDS = 36000  # Twilio's ValidityPeriod upper bound (10 h)
# Twilio error codes -> the typed delivery errors. WhatsApp's own (Meta) codes reach us as Twilio's:
# 131047 (re-engagement outside the window) as 63016, 131026 (undeliverable: not on WhatsApp) as 63024,
# 131056 / 131048 (pair rate, spam rate) as 63018, 131049 (marketing not delivered) as 63049.
OPTED_OUT_CODES = {"21610"}
WINDOW_CODES = {"63016"}
UNREACHABLE_CODES = {"63024", "63003"}  # this number cannot get WhatsApp messages: SMS may
# Invalid recipient / sender, policy refusals: retrying cannot help.
PERMANENT_CODES = {"21211", "21212", "21408", "21612", "21614", "21606", "21617", "21660", "21901",
                   "63013", "63049", "63032", "63112"}
RATE_LIMIT_CODES = {"20429", "14107", "63018"}
RATE_LIMIT_WAIT_SECONDS = {"63018": 60.0}  # WhatsApp's per-recipient pair rate: wait, do not hammer
_STATUS_FROM_TWILIO = {"accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "sent",
                       "sent": "sent", "delivered": "delivered", "read": "read"}


# build_params' keys -> the Messages API's form fields (what `messages.create` would send for them).
_FORM_FIELDS = (("to", "To"), ("from_", "From"), ("body", "Body"), ("content_sid", "ContentSid"),
                ("content_variables", "ContentVariables"), ("status_callback", "StatusCallback"),
                ("validity_period", "ValidityPeriod"), ("dlt_template_id", "DltTemplateId"))
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


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
            headers = kwargs.get("headers") or {}
            data = kwargs.get("data")
            if isinstance(data, dict) and headers.get("Content-Type") == "application/json":
                # The Content API takes JSON; twilio's aiohttp client would send the dict form-encoded.
                kwargs["data"] = json.dumps(data)
            elif isinstance(data, dict):
                # The body aiohttp would make of the dict (repeated keys for lists), encoded in one call:
                # aiohttp's FormData checks each field and builds a multipart writer (with a random
                # boundary) for every request, ≈ a tenth of a send's CPU.
                kwargs["data"] = urlencode(data, doseq=True).encode()
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
        if code in UNREACHABLE_CODES:
            return RecipientUnreachable(reason + ": WhatsApp cannot reach this number", code=code)
        if exc.status == 429 or code in RATE_LIMIT_CODES:
            return RetryAfter(RATE_LIMIT_WAIT_SECONDS.get(code or ""), reason + ": rate limited", code=code or "429")
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
        if self.channel == "whatsapp":
            params.update(self._whatsapp_content(message))
        else:
            params["body"] = self.body(message)
            if message.payload.get("dlt_template_id"):
                # India (TRAI): the registered DLT template this text matches, sent with every SMS.
                params["dlt_template_id"] = str(message.payload["dlt_template_id"])
        if self.config.status_callback_url:
            params["status_callback"] = self.config.status_callback_url
        validity = message.payload.get("validity_seconds")
        if validity:
            # Twilio drops the message instead of delivering it late.
            params["validity_period"] = max(1, min(MAX_VALIDITY_SECONDS, int(validity)))
        return params

    def _whatsapp_content(self, message: OutboundMessage) -> dict[str, Any]:
        """Body or Content template: outside the window an approved template; inside it, choices as
        quick-reply buttons or a list picker (synced Content templates), else plain text with numbers."""
        synced: dict[str, str] = message.payload.get("whatsapp_content") or {}
        if not message.payload.get("whatsapp_window_open", True):
            # The template the planner chose for this kind and the customer's locale (its variables filled
            # then), or the operator's own SID for the kind (TWILIO_WHATSAPP_TEMPLATES).
            chosen = message.payload.get("whatsapp_template")
            content_sid = (self.config.whatsapp_templates.get(message.kind) or (synced.get(chosen) if chosen else None)
                           or self.config.whatsapp_templates.get("*"))
            if not content_sid:
                raise WindowClosed("outside the WhatsApp 24-hour window and no approved template for "
                                   f"{message.kind!r}", code="window")
            params: dict[str, Any] = {"content_sid": content_sid}
            variables = message.payload.get("template_vars")
            if variables:
                params["content_variables"] = content_variables(variables)
            return params
        if not message.buttons:
            return {"body": message.text}
        locale = message.payload.get("locale")
        name = choices.interactive_content_name(len(message.buttons))
        content_sid = synced.get(name) if name else None
        if content_sid is None:  # not synced (or too many choices): the choices as numbers to type
            return {"body": choices.numbered(message.text, [label for label, _ in message.buttons], locale)}
        return {"content_sid": content_sid,
                "content_variables": content_variables(interactive_variables(message.text, message.buttons, locale))}

    def body(self, message: OutboundMessage) -> str:
        """The text as sent: on SMS typographic punctuation is made plain so the text can stay
        GSM-7 (160 characters a part, not 70); dynamic values such as product names bring it in.
        A message that fell back from WhatsApp gets its choices written as numbers."""
        if self.channel != "sms":
            return message.text
        text = message.text
        if message.payload.get("fallback_from") and message.buttons and not message.payload.get("numbered"):
            text = choices.with_choices(text, message.buttons, "sms", message.payload.get("locale"))
        return sms_text(text)

    async def send(self, message: OutboundMessage) -> Receipt:
        params = self.build_params(message)
        try:
            created = await self._create(params)
        except Exception as exc:
            raise map_twilio_error(exc) from None
        status = _STATUS_FROM_TWILIO.get(str(created.get("status") or "queued"), "queued")
        return Receipt(provider_id=created.get("sid"), status=status, detail="template" if "content_sid" in params else "")

    async def _create(self, params: dict[str, Any]) -> dict[str, Any]:
        """POST the message through twilio's own request path (its auth, headers, error parsing into
        `TwilioRestException`) and return Twilio's JSON answer. Not `messages.create_async`: that
        serialises two dozen optional arguments and parses the answer into a `MessageInstance`
        (dates, prices) for the two fields used here, ≈ a tenth of a send's CPU; it also has no
        argument for `DltTemplateId`, which Twilio accepts for India (error 21901 when invalid)."""
        messages = self.client.api.v2010.account.messages
        form = {name: params[key] for key, name in _FORM_FIELDS if params.get(key) is not None}
        payload: dict[str, Any] = await messages._version.create_async(
            method="POST", uri=messages._uri, data=form, headers=_FORM_HEADERS)
        return payload

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


LIST_BUTTON_TEMPLATE = "channels.list_button"  # the list picker's button ("Choose")


def interactive_variables(text: str, buttons: Sequence[tuple[str, str]], locale: str | None) -> dict[str, str]:
    """ContentVariables for `doorstep_buttons_N` / `doorstep_list_N` (the layouts `definitions` declares)."""
    variables = {"1": text}
    if len(buttons) <= choices.MAX_QUICK_REPLIES:
        for i, (label, payload) in enumerate(buttons):
            variables[str(2 * i + 2)] = choices.clip(label, choices.QUICK_REPLY_TITLE)
            variables[str(2 * i + 3)] = payload
        return variables
    variables["2"] = choices.clip(replies.render(LIST_BUTTON_TEMPLATE, locale), choices.QUICK_REPLY_TITLE)
    for i, (label, payload) in enumerate(buttons):
        variables[str(2 * i + 3)] = choices.clip(label, choices.LIST_ITEM_TITLE)
        variables[str(2 * i + 4)] = payload
    return variables


def content_variables(variables: Mapping[str, Any]) -> str:
    """ContentVariables as Twilio takes them (JSON), each value as WhatsApp accepts it: never empty, no
    newline, tab or run of more than four spaces (bot.core.whatsapp_templates.sanitize)."""
    return json.dumps({str(k): sanitize(v) for k, v in variables.items()})


def _whatsapp(number: str) -> str:
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def make_sms_sender(settings: Settings) -> TwilioSender:
    return TwilioSender(settings, "sms")


def make_whatsapp_sender(settings: Settings) -> TwilioSender:
    return TwilioSender(settings, "whatsapp")
