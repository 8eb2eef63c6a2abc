"""Viber: the Viber bot REST API out (send_message with keyboard buttons, set_webhook), POST /webhooks/viber in.

Inbound: `X-Viber-Content-Signature` (hex HMAC-SHA256 of the raw body with `VIBER_AUTH_TOKEN`) is
compared in constant time before anything is read (mismatch -> 403, nothing stored). Then, by event:

* `conversation_started` — the user opened the bot, with the deep link
  `viber://pa?chatURI=<VIBER_CHAT_URI>&context=<the customer's link token>` (the token Telegram deep
  links use): the Viber user is linked to that customer (never moved from another customer, never two
  users for one customer) and welcomed in the answer (Viber shows it without a subscription);
* `message` from a linked user — acknowledged like an SMS with the customer's identity, deduped on
  `message_token`, and processed in the background by the same classifier and flows; replies go out by
  Viber. A user nobody linked gets one short reply saying how to link; nothing is stored;
* `delivered`, `seen`, `failed` — the outbound message's status moves forward (seen = read);
* `subscribed` / `unsubscribed` — consent: opted in to / out of the viber channel.

Outbound: `POST <VIBER_API_BASE_URL>/pa/send_message` with `X-Viber-Auth-Token`; buttons become a
keyboard of `reply` buttons whose ActionBody is the button's value (a press comes back as that text).
Viber's status codes map to bot.core.errors (5, 6: not subscribed -> RecipientOptedOut; 12: too many
requests -> RetryAfter; 2: bad token -> ChannelNotConfigured; others -> PermanentProviderError; HTTP 5xx,
timeouts -> RetryAfter). Never logs tokens, user ids or message text.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import httpx
from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import select

from bot.core import jsonbody, replies
from bot.core.channels import InboundMessage, OutboundMessage, Receipt, sanitise_text
from bot.core.errors import ChannelNotConfigured, PermanentProviderError, RecipientOptedOut, RetryAfter
from bot.core.models import Customer, Message
from bot.core.settings import Settings
from bot.core.urls import is_web_url
from bot.delivery.outcomes import status_advances
from bot.service import Service
from bot.store import consent
from bot.web.deps import ServiceDep
from integrations.twilio_webhooks import process_in_background

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

DEFAULT_API = "https://chatapi.viber.com"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_BODY_BYTES = 256 * 1024
SIGNATURE_HEADER = "x-viber-content-signature"
EVENT_TYPES = ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
NOT_SUBSCRIBED = {5, 6}
TOO_MANY_REQUESTS = 12
BAD_TOKEN = 2
MAX_BUTTONS = 24  # Viber allows 24 buttons a keyboard


# ------------------------------------------------------------------ the REST API


def api_url(settings: Settings, method: str) -> str:
    return f"{(settings.viber.api_base_url or DEFAULT_API).rstrip('/')}/pa/{method}"


def _token(settings: Settings) -> str:
    token = settings.viber.auth_token.get_secret_value()
    if not settings.viber.configured:
        raise ChannelNotConfigured("Viber is not configured (VIBER_AUTH_TOKEN, VIBER_BOT_NAME)")
    return token


def map_viber_status(status: int, text: str) -> Exception:
    reason = f"Viber status {status} ({text[:60]})"
    if status in NOT_SUBSCRIBED:
        return RecipientOptedOut(reason + ": the user is not subscribed", code=str(status))
    if status == TOO_MANY_REQUESTS:
        return RetryAfter(None, reason + ": rate limited", code=str(status))
    if status == BAD_TOKEN:
        return ChannelNotConfigured(reason + ": invalid VIBER_AUTH_TOKEN", code=str(status))
    return PermanentProviderError(reason + ": request refused", code=str(status))


async def call(settings: Settings, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """One Viber API call; returns the answer of a `status: 0` reply, raises a delivery error otherwise."""
    token = _token(settings)
    try:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
            response = await client.post(api_url(settings, method), json=body, headers={"X-Viber-Auth-Token": token})
    except httpx.TimeoutException:
        raise RetryAfter(None, "Viber request timed out", code="timeout") from None
    except httpx.HTTPError:
        raise RetryAfter(None, "Viber unreachable", code="connection") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise RetryAfter(None, f"Viber HTTP {response.status_code}", code=str(response.status_code))
    try:
        answer = response.json()
        status = int(answer.get("status", -1))
    except (ValueError, AttributeError):
        raise PermanentProviderError(f"Viber HTTP {response.status_code}: not a Viber answer", code="bad-answer") from None
    if status != 0:
        raise map_viber_status(status, str(answer.get("status_message", "")))
    return dict(answer)


def keyboard(buttons: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    if not buttons:
        return None
    return {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
        {"ActionType": "reply", "ActionBody": value[:250], "Text": label[:250], "Columns": 6, "Rows": 1}
        for label, value in buttons[:MAX_BUTTONS]]}


def message_body(settings: Settings, receiver: str, text: str, buttons: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    sender: dict[str, Any] = {"name": settings.viber.bot_name[:28]}
    if settings.viber.bot_avatar:
        sender["avatar"] = settings.viber.bot_avatar
    body: dict[str, Any] = {"receiver": receiver, "min_api_version": 1, "sender": sender, "type": "text",
                            "text": text or " "}
    if (markup := keyboard(buttons)) is not None:
        body["keyboard"] = markup
    return body


class ViberSender:
    """Sends `viber` outbox messages (send_message)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: OutboundMessage) -> Receipt:
        if not message.to:
            raise PermanentProviderError("the customer has no linked Viber user", code="no-recipient")
        answer = await call(self.settings, "send_message",
                            message_body(self.settings, message.to, message.text, message.buttons))
        return Receipt(provider_id=str(answer.get("message_token", ""))[:100] or None, status="sent")


def make_sender(settings: Settings) -> ViberSender:
    return ViberSender(settings)


async def set_webhook(settings: Settings, url: str | None = None) -> dict[str, Any]:
    """Register `url` (default DOORSTEP_PUBLIC_URL/webhooks/viber) with Viber for every event Doorstep reads."""
    target = url or settings.public_url.rstrip("/") + "/webhooks/viber"
    return await call(settings, "set_webhook", {"url": target, "event_types": EVENT_TYPES, "send_name": True,
                                                "send_photo": False})


# ------------------------------------------------------------------ the webhook


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason})


def signature_valid(token: str, body: bytes, presented: str) -> bool:
    expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, presented.strip().lower().encode("ascii", "replace").decode())


def _linked(service: Service, user_id: str) -> Customer | None:
    with service.db.read() as session:
        return session.exec(select(Customer).where(Customer.viber_user_id == user_id)).first()


def link_user(service: Service, user_id: str, context: str) -> Customer | None:
    """Link a Viber user to the customer whose link token is `context`; the linked customer, or None."""
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.telegram_link_token == context)).first()
        if customer is None or customer.erased_at is not None:
            return None
        if customer.viber_user_id not in (None, user_id):
            return None  # a token never moves a customer who is already linked to another Viber user
        holder = session.exec(select(Customer).where(Customer.viber_user_id == user_id)).first()
        if holder is not None and holder.id != customer.id:
            return None  # this Viber user already speaks for someone else
        customer.viber_user_id = user_id
        session.add(customer)
        return customer


def set_consent(service: Service, user_id: str, *, subscribed: bool) -> bool:
    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.viber_user_id == user_id)).first()
        if customer is None:
            return False
        # Through the consent ledger (bot.store.consent), like every opt-in and opt-out.
        consent.set_consent(session, customer, "viber", opted_out=not subscribed, source="viber.subscribed" if subscribed else "viber.unsubscribed")
        return True


def apply_status(service: Service, token: str, event: str, description: str) -> bool:
    status = {"delivered": "delivered", "seen": "read", "failed": "failed"}[event]
    with service.db.session() as session:
        message = session.exec(select(Message).where(
            Message.channel == "viber", Message.direction == "out", Message.provider_message_id == token)).first()
        if message is None or message.status in {"failed", "cancelled", "expired"}:
            return False
        if status == "failed":
            message.status, message.error_code = "failed", "viber-failed"
            message.error = ("Viber reported failed: " + description)[:500]
        elif status_advances(message.status, status):
            message.status = status
        else:
            return False
        session.add(message)
        return True


async def tell_unlinked(settings: Settings, user_id: str, locale: str) -> None:
    """One direct reply to a user nobody linked (best effort; nothing was stored for them)."""
    try:
        await call(settings, "send_message", message_body(settings, user_id, replies.render("viber.not_linked", locale)))
    except Exception as exc:
        log.info("viber: the unlinked user could not be told how to link: %s", exc.__class__.__name__)


def _locale(user: dict[str, Any]) -> str:
    language = str(user.get("language") or "en").split("-")[0].lower()
    return {"hi": "hi-Latn", "es": "es"}.get(language, "en")


@router.post("/webhooks/viber", summary="Viber bot callbacks (X-Viber-Content-Signature)")
async def viber_callback(request: Request, service: ServiceDep, background: BackgroundTasks) -> Response:
    settings = service.settings
    token = settings.viber.auth_token.get_secret_value()
    if not settings.viber.configured:
        return _problem(403, "Viber is not configured (VIBER_AUTH_TOKEN, VIBER_BOT_NAME)")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _problem(413, "request body too large")
    if not signature_valid(token, body, request.headers.get(SIGNATURE_HEADER, "")):
        log.warning("viber webhook refused: bad signature")
        return _problem(403, "invalid X-Viber-Content-Signature")
    try:
        data = jsonbody.loads(body)
    except ValueError:
        return _problem(400, "body is not JSON (expected a Viber callback)")
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return _problem(400, "not a Viber callback: no event")
    event = data["event"]
    if event == "webhook":
        return JSONResponse({"ok": True})  # set_webhook's check
    if event in {"delivered", "seen", "failed"}:
        message_token = str(data.get("message_token") or "")[:100]
        if not message_token:
            return _problem(400, "message_token is required")
        await asyncio.to_thread(apply_status, service, message_token, event, str(data.get("desc") or ""))
        return JSONResponse({"ok": True})
    user = data.get("user") if isinstance(data.get("user"), dict) else data.get("sender")
    user_id = str((user or {}).get("id") or data.get("user_id") or "")[:64]
    if not user_id:
        return _problem(400, "the callback names no user")
    if event in {"subscribed", "unsubscribed"}:
        known = await asyncio.to_thread(set_consent, service, user_id, subscribed=event == "subscribed")
        return JSONResponse({"ok": True, "linked": known})
    if event == "conversation_started":
        context = str(data.get("context") or "")[:64]
        customer = await asyncio.to_thread(link_user, service, user_id, context) if context else None
        customer = customer or await asyncio.to_thread(_linked, service, user_id)
        locale = customer.locale if customer else _locale(user or {})
        key = "viber.linked" if customer else "viber.not_linked"
        # Viber shows the answer's message as the welcome message (no subscription needed).
        return JSONResponse(message_body(settings, user_id, replies.render(
            key, locale, customer_name=(customer.name.split(" ")[0] if customer and customer.name else ""))))
    if event != "message":
        return JSONResponse({"ok": True, "handled": False})
    return await _message(service, data, user or {}, user_id, background)


async def _message(service: Service, data: dict[str, Any], user: dict[str, Any], user_id: str,
                   background: BackgroundTasks) -> Response:
    message = data.get("message")
    message_token = str(data.get("message_token") or "")[:100]
    if not isinstance(message, dict) or not message_token:
        return _problem(400, "a message callback needs message and message_token")
    customer = await asyncio.to_thread(_linked, service, user_id)
    if customer is None or not customer.phone:
        background.add_task(tell_unlinked, service.settings, user_id, _locale(user))
        return JSONResponse({"ok": True, "handled": False})
    media = str(message.get("media") or "")
    inbound = InboundMessage(
        channel="viber", text=sanitise_text(str(message.get("text") or "")), provider_message_id=message_token,
        phone=customer.phone, media_urls=(media,) if is_web_url(media) else (), received_at=service.now(),
        profile_name=sanitise_text(str(user.get("name") or ""))[:200])
    with service.db.ack_priority.acknowledging():
        received = await service.acknowledge(inbound)
    if received.message_id is not None:
        background.add_task(process_in_background, service, received.message_id)
    return JSONResponse({"ok": True, "handled": True, "duplicate": received.duplicate})

