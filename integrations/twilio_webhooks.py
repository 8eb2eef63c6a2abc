"""Twilio SMS/WhatsApp webhooks: POST /webhooks/twilio and /webhooks/twilio/status.

Inbound: verify `X-Twilio-Signature` with twilio's `RequestValidator` against
`DOORSTEP_PUBLIC_URL` + path (+ query), so it works behind a proxy; parse the
form into an `InboundMessage` (`From: whatsapp:+E164` means WhatsApp; media
URLs kept; a tapped button or list row, `ButtonPayload` / `ListId`, is the
message: the payload the flow offered, read like a Telegram button); acknowledge it (`service.acknowledge`: one INSERT … ON CONFLICT
DO NOTHING on MessageSid, group-committed with the concurrent requests, and
nothing else); answer an empty TwiML `<Response/>` once it is committed, and
identify the customer and run the conversation in a background task, so
nothing slow (an LLM, a busy conversation) ever makes Twilio wait. A crash
before that task runs is recovered by `gateway.process_pending`.

Status callbacks move an outbound message's status forward only (queued <
sent < delivered < read; failed/undelivered are final, with the error code).
63016 (WhatsApp window closed) and 63024 / 63003 (not reachable on WhatsApp)
queue the same text by SMS; 21610 marks the customer opted out of that channel.

Never: store anything from a request whose signature fails, answer 500 to
bad input, or log phone numbers, message text or tokens.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from bot.core.channels import InboundMessage, sanitise_text
from bot.core.models import Customer, Message
from bot.core.phones import InvalidPhone, mask, to_e164
from bot.core.urls import is_web_url
from bot.delivery import dispatcher
from bot.delivery.outcomes import STATUS_RANK, fallback_channel, status_advances
from bot.service import Service
from bot.store.outbox import enqueue_message, mark_opted_out
from bot.web.deps import ServiceDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_BODY_BYTES = 256 * 1024
MAX_MEDIA = 10
# Outbound status order; a callback may only move a message forward.
FINAL_FAILURES = {"failed", "undelivered"}
KNOWN_STATUSES = set(STATUS_RANK) | FINAL_FAILURES | {"canceled"}
# Undelivered on WhatsApp, deliverable by SMS: the window closed (63016, Meta 131047), or the number
# cannot get WhatsApp messages (63024 / 63003, Meta 131026).
FALLBACK_CODES = {"63016", "63024", "63003"}


def twiml() -> Response:
    return Response(content=EMPTY_TWIML, media_type="application/xml")


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason})


async def verified_form(request: Request, service: Service, signature: str | None) -> dict[str, str] | JSONResponse:
    """The form parameters of a request Twilio really signed, or the error response to send."""
    auth_token = service.settings.twilio_auth_token.get_secret_value()  # not `.twilio`: a model built per call
    if not auth_token:
        return _problem(403, "Twilio is not configured (TWILIO_AUTH_TOKEN)")
    if not signature:
        return _problem(403, "missing X-Twilio-Signature")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return _problem(413, "request body too large")
    # Twilio always sends UTF-8 forms; anything else cannot carry a valid signature and is refused below.
    params = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    url = service.settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    from twilio.request_validator import RequestValidator

    if not RequestValidator(auth_token).validate(url, params, signature):
        log.warning("twilio webhook refused: bad signature path=%s", request.url.path)
        return _problem(403, "invalid X-Twilio-Signature")
    return params


def parse_inbound(params: dict[str, str], *, now: datetime) -> InboundMessage:
    """Twilio's inbound form -> InboundMessage; raises InvalidPhone / ValueError with a reason."""
    sender = params.get("From", "")
    channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:
        raise ValueError("MessageSid is missing")
    try:
        count = min(MAX_MEDIA, max(0, int(params.get("NumMedia") or 0)))
    except ValueError:
        count = 0
    # Only web links are kept: the inbox and Chatwoot show attachments as links.
    media = tuple(params[f"MediaUrl{i}"] for i in range(count) if is_web_url(params.get(f"MediaUrl{i}") or ""))
    # A WhatsApp tap: the button's / list row's id is the payload the flow offered (`/btn:affirm:yes`);
    # Body only carries the title the customer saw.
    tapped = params.get("ButtonPayload") or params.get("ListId") or ""
    text = tapped if channel == "whatsapp" and tapped else params.get("Body", "")
    return InboundMessage(
        channel=channel, text=sanitise_text(text), provider_message_id=sid[:100],
        phone=to_e164(sender, strict=False), media_urls=media, received_at=now,  # Twilio verified the sender
        profile_name=sanitise_text(params.get("ProfileName", ""))[:200],
    )


async def process_in_background(service: Service, message_id: int) -> None:
    """Identify the sender and run the conversation after the webhook has been answered, batched with
    the other messages waiting (`Service.process_soon`); the commit of its replies wakes the dispatchers."""
    try:
        await service.process_soon(message_id)
    except Exception:  # process_pending retries it; the webhook was already acknowledged
        log.warning("background processing failed message=%s; will be retried", message_id)


@router.post("/webhooks/twilio", summary="Twilio inbound SMS / WhatsApp (signed form)")
async def twilio_inbound(request: Request, service: ServiceDep, background: BackgroundTasks,
                         x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    with service.db.ack_priority.acknowledging():  # processing in this process yields meanwhile
        params = await verified_form(request, service, x_twilio_signature)
        if isinstance(params, JSONResponse):
            return params
        try:
            inbound = parse_inbound(params, now=service.now())
        except InvalidPhone as exc:
            return _problem(400, f"From: {exc}")
        except ValueError as exc:
            return _problem(400, str(exc))
        received = await service.acknowledge(inbound)
    if received.message_id is not None:
        background.add_task(process_in_background, service, received.message_id)
    return twiml()


@router.post("/webhooks/twilio/status", summary="Twilio delivery status callback (signed form)")
async def twilio_status(request: Request, service: ServiceDep,
                        x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    params = await verified_form(request, service, x_twilio_signature)
    if isinstance(params, JSONResponse):
        return params
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not sid or status not in KNOWN_STATUSES:
        return _problem(400, "MessageSid and a known MessageStatus are required")
    changed = await asyncio.to_thread(apply_status, service, sid[:100], status, (params.get("ErrorCode") or "")[:32] or None)
    if changed:
        await asyncio.to_thread(dispatcher.notify, service.db)
    return Response(status_code=200)


def apply_status(service: Service, sid: str, status: str, error_code: str | None) -> bool:
    """Move the message's status forward; returns True when a fallback was queued."""
    fallback_queued = False
    with service.db.session() as session:
        message = session.exec(select(Message).where(
            col(Message.channel).in_(("sms", "whatsapp")), Message.provider_message_id == sid,
            Message.direction == "out")).first()
        if message is None:
            log.info("twilio status for unknown message sid=%s status=%s (ignored)", sid[:8] + "…", status)
            return False
        service.db.lock_row(session, "message", message.id or 0)
        session.refresh(message)
        if message.status in FINAL_FAILURES | {"failed", "cancelled", "expired"}:
            return False  # final: a late "sent" or "delivered" does not revive it
        if status in FINAL_FAILURES or status == "canceled":
            message.status = "cancelled" if status == "canceled" else status
            message.error_code = error_code
            message.error = f"Twilio reported {status}" + (f" ({error_code})" if error_code else "")
            customer = session.get(Customer, message.customer_id) if message.customer_id else None
            if error_code == "21610" and customer is not None:
                mark_opted_out(session, customer.id or 0, message.channel, code=error_code)
            elif (error_code in FALLBACK_CODES and customer is not None
                  and (target := fallback_channel(message.channel, customer, service.settings)) is not None):
                enqueue_message(session=session, customer=customer, channel=target, text=message.text,
                                conversation_id=message.conversation_id, order_pk=message.order_pk,
                                template=message.template, dedupe_key=f"sms-fallback:{message.id}",
                                payload={"fallback_from": message.channel})
                fallback_queued = True
                log.info("%s 63016 for message=%s customer=%s: queued by %s", message.channel, message.id,
                         mask(customer.phone), target)
        elif status_advances(message.status, status):
            message.status = status
        session.add(message)
    return fallback_queued
