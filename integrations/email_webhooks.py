"""Email webhooks: replies in (inbound parse), bounces and complaints, and the unsubscribe link.

* `POST /webhooks/email/inbound` — one received email as raw RFC 5322 bytes (what an MTA pipe, or a
  provider's "raw MIME" inbound-parse option, posts), signed per Standard Webhooks with
  `EMAIL_WEBHOOK_SECRET` (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The customer is who the
  reply token says (in the `reply+<token>@` recipient, or in the `In-Reply-To` / `References` of our
  Message-ID) **and** the `From` address is that customer's stored email: both, or nothing is stored.
  The text (quoted history and signature removed, email-reply-parser) is acknowledged like an SMS with
  the customer's identity and goes through the same classifier and flows; replies go out by email.
  Auto-replies (out of office, `Auto-Submitted`) are acknowledged and dropped, so two robots never talk.
* `POST /webhooks/email/events` — `{"type": "delivered|bounce|complaint", "email", "message_id"?,
  "bounce_type": "permanent|transient"?}`, signed the same way: a permanent bounce or a complaint marks
  the address (`Customer.email_status`) so nothing more goes there; the message moves to delivered or
  failed.
* `GET /email/unsubscribe?token=…` shows a confirmation button; `POST` (the button, or a mail client's
  RFC 8058 one-click `List-Unsubscribe=One-Click`) records the opt-out: no more order emails, replies to
  the customer's own emails still go.

Never: store anything from an unsigned request, answer 500 to bad input, or log addresses or text.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import func, select

from bot.core import replies
from bot.core.channels import InboundMessage, sanitise_text
from bot.core.models import Customer, Message
from bot.delivery.outcomes import status_advances
from bot.service import Service
from bot.store import consent
from bot.web.deps import ServiceDep
from integrations.email_channel import REPLY_PURPOSE, UNSUBSCRIBE_PATH, UNSUBSCRIBE_PURPOSE, read_token
from integrations.twilio_webhooks import process_in_background

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 2 * 1024 * 1024  # one email with its quoted history; attachments are not kept
_REPLY_ADDRESS = re.compile(r"(?i)^reply\+([0-9]+-[0-9a-f]+)@")
_MESSAGE_ID_TOKEN = re.compile(r"(?i)<([0-9]+-[0-9a-f]+)\.[0-9]+\.[0-9a-f]+@")
_SUBJECT_PREFIX = re.compile(r"(?i)^\s*((re|aw|sv|fw|fwd|rv|res)\s*:\s*)+")
RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason})


async def verified_body(request: Request, service: Service) -> bytes | JSONResponse:
    """The raw body of a request signed with EMAIL_WEBHOOK_SECRET (Standard Webhooks), or the error response."""
    secret = service.settings.email.webhook_secret.get_secret_value()
    if not secret:
        return _problem(403, "email webhooks are not configured (EMAIL_WEBHOOK_SECRET)")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    from standardwebhooks.webhooks import Webhook

    try:
        text = body.decode("utf-8")  # the signature covers the body as UTF-8 text (7-bit email is too)
    except UnicodeDecodeError:
        return _problem(400, "body is not UTF-8 (send 8-bit email parts quoted-printable or base64)")
    try:
        Webhook(secret).verify(text, dict(request.headers), json_parse=False)
    except Exception:  # missing headers, a stale timestamp, a bad or malformed signature
        log.warning("email webhook refused: bad signature path=%s", request.url.path)
        return _problem(401, "invalid or missing webhook-signature (Standard Webhooks, EMAIL_WEBHOOK_SECRET)")
    return body


# ------------------------------------------------------------------ inbound replies


class _TextOfHtml(HTMLParser):
    """The visible text of an HTML body (for emails without a text/plain part)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in {"script", "style", "head"}:
            self._skip += 1
        elif tag in {"br", "p", "div", "tr", "li"}:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def body_text(email: EmailMessage) -> str:
    """What the customer wrote: the plain text part (or the HTML part's text) without quoted history."""
    part = email.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset or broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if part.get_content_subtype() == "html":
        parser = _TextOfHtml()
        parser.feed(content)
        content = html.unescape("".join(parser.parts))
    from email_reply_parser import EmailReplyParser

    return str(EmailReplyParser.parse_reply(content.replace("\r\n", "\n"))).strip()


def reply_token(email: EmailMessage) -> str | None:
    """The reply token of the address the customer wrote to, else of the message they answered."""
    for header in RECIPIENT_HEADERS:
        for _, address in getaddresses([str(v) for v in email.get_all(header, [])]):
            found = _REPLY_ADDRESS.match(address.strip())
            if found:
                return found.group(1)
    for header in ("In-Reply-To", "References"):
        found = _MESSAGE_ID_TOKEN.search(str(email.get(header, "")))
        if found:
            return found.group(1)
    return None


def is_auto_reply(email: EmailMessage) -> bool:
    auto = str(email.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(email.get("Precedence", "")).strip().lower()
    return (auto not in {"", "no"} or precedence in {"bulk", "junk", "list", "auto_reply"}
            or email.get("X-Autoreply") is not None or email.get("X-Autorespond") is not None)


def sender_of(service: Service, email: EmailMessage) -> Customer | None:
    """The customer the reply token names, if the email comes from that customer's own address."""
    token = reply_token(email)
    secret = service.settings.email.link_secret.get_secret_value()
    customer_id = read_token(secret, REPLY_PURPOSE, token) if token else None
    if customer_id is None:
        return None
    from_address = parseaddr(str(email.get("From", "")))[1].strip().casefold()
    with service.db.read() as session:
        customer = session.get(Customer, customer_id)
    if customer is None or not customer.email or customer.erased_at is not None or not customer.phone:
        return None
    return customer if customer.email.strip().casefold() == from_address else None


@router.post("/webhooks/email/inbound", summary="A reply by email (raw RFC 5322, Standard Webhooks signature)")
async def email_inbound(request: Request, service: ServiceDep, background: BackgroundTasks) -> Response:
    body = await verified_body(request, service)
    if isinstance(body, JSONResponse):
        return body
    try:
        email = BytesParser(policy=policy.default).parsebytes(body)
    except Exception:
        return _problem(400, "body is not an email message (RFC 5322)")
    if not isinstance(email, EmailMessage) or not email.get("From"):
        return _problem(400, "body is not an email message: no From header")
    if is_auto_reply(email):
        return JSONResponse({"handled": False, "reason": "automatic reply"})
    customer = await asyncio.to_thread(sender_of, service, email)
    if customer is None:
        # Not the customer's own address with their reply token: nothing is stored, nobody is answered
        # (answering an unverified sender would be a way to make us mail anyone).
        log.info("inbound email not matched to a customer (no valid reply token for that sender)")
        return JSONResponse({"handled": False, "reason": "sender not recognised"})
    text = body_text(email) or _SUBJECT_PREFIX.sub("", str(email.get("Subject", "")))
    message_id = str(email.get("Message-ID", "")).strip().strip("<>") or request.headers.get("webhook-id", "")
    display_name = parseaddr(str(email.get("From", "")))[0]
    inbound = InboundMessage(channel="email", text=sanitise_text(text), provider_message_id=message_id[:100],
                             phone=customer.phone, received_at=service.now(),
                             profile_name=sanitise_text(display_name)[:200])
    with service.db.ack_priority.acknowledging():
        received = await service.acknowledge(inbound)
    if received.message_id is not None:
        background.add_task(process_in_background, service, received.message_id)
    return JSONResponse({"handled": True, "duplicate": received.duplicate})


# ------------------------------------------------------------------ bounces and complaints


class EmailEvent(BaseModel):
    type: str = Field(..., pattern=r"^(delivered|bounce|complaint)$")
    email: str = Field(..., min_length=3, max_length=254)
    message_id: str | None = Field(None, max_length=300)
    bounce_type: str = Field("permanent", pattern=r"^(permanent|transient)$")


def apply_email_event(service: Service, event: EmailEvent) -> dict[str, int]:
    """Mark the address and move the message; returns how many of each changed."""
    address = event.email.strip().casefold()
    marked = moved = 0
    with service.db.session() as session:
        if event.message_id:
            message = session.exec(select(Message).where(
                Message.channel == "email", Message.direction == "out",
                Message.provider_message_id == event.message_id.strip().strip("<>")[:100])).first()
            if message is not None and message.status not in {"failed", "cancelled", "expired"}:
                if event.type == "delivered" and status_advances(message.status, "delivered"):
                    message.status = "delivered"
                    moved += 1
                elif event.type == "bounce":
                    message.status, message.error_code = "failed", f"{event.bounce_type}-bounce"
                    message.error = f"the receiving server bounced it ({event.bounce_type})"
                    moved += 1
                session.add(message)
        source = {"complaint": "email.complaint"}.get(event.type) or (
            "email.bounce" if event.type == "bounce" and event.bounce_type == "permanent" else None)
        if source is not None:
            for customer in session.exec(select(Customer).where(func.lower(Customer.email) == address)):
                # Through the consent ledger; a complaint is never downgraded to a bounce there.
                marked += consent.set_consent(session, customer, "email", opted_out=True, source=source,
                                              detail=f"{event.bounce_type} bounce" if event.type == "bounce"
                                              else "spam report")
    return {"addresses_marked": marked, "messages_updated": moved}


@router.post("/webhooks/email/events", summary="Email delivery, bounce and complaint events (Standard Webhooks)")
async def email_events(request: Request, service: ServiceDep) -> Response:
    body = await verified_body(request, service)
    if isinstance(body, JSONResponse):
        return body
    try:
        event = EmailEvent.model_validate_json(body)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})[:5]
        return _problem(422, "invalid email event: " + ", ".join(fields))
    changed = await asyncio.to_thread(apply_email_event, service, event)
    return JSONResponse(changed)


# ------------------------------------------------------------------ unsubscribe


def _page(locale: str, key: str, *, status: int = 200, form_action: str | None = None, shop_name: str = "") -> HTMLResponse:
    text = html.escape(replies.render(f"email.{key}", locale, shop_name=shop_name))
    form = ""
    if form_action is not None:
        button = html.escape(replies.render("email.unsubscribe_button", locale))
        form = (f'<form method="post" action="{html.escape(form_action)}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f"<button type=\"submit\">{button}</button></form>")
    page = (f'<!DOCTYPE html><html lang="{html.escape(locale)}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width"><meta name="robots" content="noindex">'
            f"<title>{text}</title></head><body style=\"font-family:sans-serif;max-width:480px;margin:48px auto\">"
            f"<p>{text}</p>{form}</body></html>")
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _customer_for_link(service: Service, token: str) -> Customer | None:
    customer_id = read_token(service.settings.email.link_secret.get_secret_value(), UNSUBSCRIBE_PURPOSE, token)
    if customer_id is None:
        return None
    with service.db.read() as session:
        return session.get(Customer, customer_id)


@router.get(UNSUBSCRIBE_PATH, summary="The unsubscribe page of an order email (signed link)")
async def unsubscribe_page(request: Request, service: ServiceDep, token: str = "") -> Response:
    # A GET changes nothing: mail scanners open links; the button (or the one-click POST) unsubscribes.
    customer = await asyncio.to_thread(_customer_for_link, service, token)
    if customer is None:
        return _page("en", "bad_link", status=400)
    return _page(customer.locale, "unsubscribe_page", form_action=str(request.url),
                 shop_name=service.settings.shop_name)


def unsubscribe(service: Service, customer_id: int) -> None:
    with service.db.session() as session:
        customer = session.get(Customer, customer_id)
        if customer is not None:
            consent.set_consent(session, customer, "email", opted_out=True, source="email.unsubscribe",
                                detail="List-Unsubscribe")


@router.post(UNSUBSCRIBE_PATH, summary="Unsubscribe from order emails (RFC 8058 one-click, signed link)")
async def unsubscribe_one_click(service: ServiceDep, token: str = "") -> Response:
    customer = await asyncio.to_thread(_customer_for_link, service, token)
    if customer is None:
        return _page("en", "bad_link", status=400)
    await asyncio.to_thread(unsubscribe, service, customer.id or 0)
    log.info("email unsubscribe recorded customer=%s", customer.id)
    return _page(customer.locale, "unsubscribed")
