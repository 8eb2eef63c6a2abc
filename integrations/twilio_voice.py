"""Twilio Voice: calls for action-required moments, inbound "where is my order" calls, call outcomes.

Outbound: the contact policy (`bot.journeys.policy.ContactPolicy.plan_call`) queues a `voice` outbox
message when a text got no answer in time (the COD confirmation before dispatch, …) and
`DOORSTEP_VOICE_CALLS` is on; `VoiceSender` places it with the real twilio client (`calls.create`,
`Url` = /webhooks/twilio/voice/call?m=<message id>, `StatusCallback`, answering-machine detection).
Every other `voice` message is a reply the conversation produced during a call: it was spoken in that
call (TwiML), so sending it is only recorded.

In the call: TwiML built with twilio's `VoiceResponse`; the message is read inside
`<Gather input="dtmf speech" language=…>` in the customer's language. The answer — `Digits` (1 = yes,
2 = no) or the transcribed `SpeechResult` — goes through the same acknowledgement, classifier and flows as
a text (a keypress or "yes" confirms a COD order exactly like an SMS "yes"), and the bot's replies are read
back, with one more `<Gather>` for a follow-up.

Inbound: POST /webhooks/twilio/voice (the number's "A call comes in"): a caller whose number belongs to a
customer hears the answer to "where is my order" about their own orders; anyone else hears a polite
generic message and nothing is stored.

Outcomes: answered, voicemail (`AnsweredBy` machine_*), no-answer, busy, failed are recorded on the
call's message in the message log (status + error_code, shown with escalations and in the inbox); a
voicemail leaves a short message, and every outcome but "answered" queues the journey's text instead.

Every request is verified like SMS (`X-Twilio-Signature`, twilio's `RequestValidator` against
DOORSTEP_PUBLIC_URL + path + query): a bad signature gets 403 and changes nothing. Never logs phone
numbers, speech or digits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import select

from bot.core import replies
from bot.core.channels import InboundMessage, OutboundMessage, Receipt, sanitise_text
from bot.core.errors import ChannelNotConfigured, PermanentProviderError
from bot.core.models import Conversation, Customer, Message, Order, Outbox
from bot.core.phones import InvalidPhone, to_e164
from bot.core.settings import Settings
from bot.service import Service
from bot.store import outbox
from bot.web.deps import ServiceDep
from integrations.twilio_channel import TwilioSender, map_twilio_error
from integrations.twilio_webhooks import MAX_BODY_BYTES, verified_form  # noqa: F401  (the same body limit as SMS)

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

CALL_TIMEOUT_SECONDS = 30  # ringing before "no-answer"
GATHER_TIMEOUT_SECONDS = 6
MAX_TURNS = 6  # gathers in one call: a call is for one action, not a long chat
DIGIT_ANSWERS = {"1": "yes", "2": "no"}
# Customer locale -> the language Twilio speaks (<Say>) and recognises (<Gather>).
CALL_LANGUAGES = {"en": "en-IN", "es": "es-ES", "hi-Latn": "hi-IN"}
OUTCOME_FAILURES = {"no-answer": "no-answer", "busy": "busy", "failed": "call-failed", "canceled": "call-canceled"}
QUESTION_OPTIONS = re.compile(r"(^|\s)1\)")  # "1) … 2) …": a reply that offers numbered options
FINAL_STATUSES = {"delivered", "read", "failed", "cancelled", "expired"}


def call_language(locale: str | None) -> str:
    return CALL_LANGUAGES.get(locale or "en", CALL_LANGUAGES["en"])


def _url(settings: Settings, path: str, **query: Any) -> str:
    return settings.public_url.rstrip("/") + path + ("?" + urlencode(query) if query else "")


# ------------------------------------------------------------------ placing calls


class VoiceSender(TwilioSender):
    """Sends `voice` outbox messages: a call (`calls.create`) for a journey's call, else records the reply
    as spoken (it was read in the call that produced it)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "voice")
        self.settings = settings

    def _from(self) -> str:
        sender = self.settings.twilio_voice_from or self.config.sms_from
        if not self.config.configured or not sender:
            raise ChannelNotConfigured("voice is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
                                       "TWILIO_VOICE_FROM or TWILIO_SMS_FROM)")
        return sender

    def build_call(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.to:
            raise PermanentProviderError("the customer has no phone number", code="no-recipient")
        return {"to": message.to, "from_": self._from(), "method": "POST",
                "url": _url(self.settings, "/webhooks/twilio/voice/call", m=message.message_id),
                "status_callback": _url(self.settings, "/webhooks/twilio/voice/status", m=message.message_id),
                "status_callback_method": "POST", "status_callback_event": ["answered", "completed"],
                "machine_detection": "DetectMessageEnd", "timeout": CALL_TIMEOUT_SECONDS}

    async def send(self, message: OutboundMessage) -> Receipt:
        if not message.payload.get("call"):
            return Receipt(provider_id=None, status="delivered", detail="spoken in the call")
        params = self.build_call(message)
        try:
            created = await self.client.calls.create_async(**params)
        except Exception as exc:
            raise map_twilio_error(exc) from None
        return Receipt(provider_id=created.sid, status="sent", detail="call placed")

    async def reconcile(self, message: OutboundMessage) -> Receipt | None:
        return None  # a call interrupted mid-placement is not placed again blindly: the dispatcher decides


def make_sender(settings: Settings) -> VoiceSender:
    return VoiceSender(settings)


# ------------------------------------------------------------------ TwiML


def _twiml(response: Any) -> Response:
    return Response(content=str(response), media_type="application/xml")


def _say(settings: Settings, lines: list[str], locale: str, *, gather_action: str | None,
         closing: str | None) -> Response:
    """Lines read in the customer's language, inside a <Gather> (dtmf + speech) when there is an action;
    `closing` is said when the gather hears nothing (or at once without one), then the call ends."""
    from twilio.twiml.voice_response import Gather, VoiceResponse

    language = call_language(locale)
    response = VoiceResponse()
    if gather_action:
        gather = Gather(input="dtmf speech", action=gather_action, method="POST", language=language,
                        num_digits=1, timeout=GATHER_TIMEOUT_SECONDS, speech_timeout="auto")
        for line in lines:
            gather.say(line, language=language)
        response.append(gather)
    else:
        for line in lines:
            response.say(line, language=language)
    if closing:
        response.say(closing, language=language)
    response.hangup()
    return _twiml(response)


def _shop_vars(service: Service) -> dict[str, Any]:
    config = service.runtime.shop_config
    return {"shop_name": config.get("shop_name", ""), "support_contact": config.get("support_contact", "")}


def _render(service: Service, key: str, locale: str, **variables: Any) -> str:
    return replies.render(key, locale, **_shop_vars(service), **variables)


def _with_prompt(service: Service, lines: list[str], locale: str) -> list[str]:
    """The replies, then "anything else?" unless the last reply already asks something."""
    if lines and ("?" in lines[-1] or QUESTION_OPTIONS.search(lines[-1])):
        return lines
    return [*lines, _render(service, "voice.more", locale)]


# ------------------------------------------------------------------ the call's records


def _call_message(service: Service, message_id: str) -> tuple[Message, Customer, Order | None] | None:
    try:
        pk = int(message_id)
    except ValueError:
        return None
    with service.db.read() as session:
        message = session.get(Message, pk)
        if message is None or message.channel != "voice" or message.direction != "out" or not message.customer_id:
            return None
        customer = session.get(Customer, message.customer_id)
        order = session.get(Order, message.order_pk) if message.order_pk else None
        if customer is None:
            return None
        session.expunge_all()
        return message, customer, order


def record_outcome(service: Service, message_id: int, outcome: str, call_sid: str) -> bool:
    """Record a call's outcome on its message once (answered / voicemail / no-answer / busy / failed);
    every outcome but "answered" queues the journey's text. True when something changed."""
    with service.db.session() as session:
        service.db.lock_row(session, "message", message_id)
        message = session.get(Message, message_id, populate_existing=True)
        if message is None or message.status in FINAL_STATUSES:
            return False
        message.provider_message_id = message.provider_message_id or call_sid[:100]
        if outcome == "answered":
            message.status = "delivered"
        elif outcome == "voicemail":
            message.status, message.error_code = "delivered", "voicemail"
            message.error = "call reached voicemail: a short message was left and a text follows"
        else:
            message.status, message.error_code = "failed", OUTCOME_FAILURES.get(outcome, "call-failed")
            message.error = f"call not answered ({outcome}): a text follows"
        message.sent_at = message.sent_at or service.now()
        session.add(message)
        if outcome != "answered":
            _queue_followup_text(service, session, message)
        log.info("voice call outcome message=%s outcome=%s", message.id, outcome)
        return True


def _queue_followup_text(service: Service, session: Any, message: Message) -> None:
    customer = session.get(Customer, message.customer_id)
    row = session.exec(select(Outbox).where(Outbox.message_id == message.id)).first()
    text = str((row.payload or {}).get("followup_text") or "") if row is not None else ""
    if customer is None or not text or customer.erased_at is not None:
        return
    channel = service.journeys.channel_for(customer, {"channel": "preferred"}) or "sms"
    if channel == "voice":
        channel = "sms"
    if channel in customer.opted_out_channels:
        return
    outbox.enqueue_message(session=session, customer=customer, channel=channel, text=text,
                           conversation_id=message.conversation_id, order_pk=message.order_pk,
                           template=message.template, dedupe_key=f"call-followup:{message.id}",
                           priority=outbox.PRIORITY_TRANSACTIONAL, now=service.now(),
                           payload={"journey": (row.payload or {}).get("journey") if row else None,
                                    "after_call": message.id, "fallback_channel": "sms"})


def _keep_text_channel(service: Service, customer_id: int, previous: str | None) -> None:
    """A call turn makes `voice` the conversation's channel (where the customer last spoke); agents'
    answers and later replies should still go by text, so the channel before the call is kept."""
    if not previous or previous == "voice":
        return
    with service.db.session() as session:
        conversation = session.exec(select(Conversation).where(Conversation.customer_id == customer_id)).first()
        if conversation is not None and conversation.channel == "voice":
            conversation.channel = previous
            session.add(conversation)


def _conversation_channel(service: Service, customer_id: int) -> str | None:
    with service.db.read() as session:
        return session.exec(select(Conversation.channel).where(Conversation.customer_id == customer_id)).first()


def _customer_by_phone(service: Service, phone: str) -> Customer | None:
    with service.db.read() as session:
        customer = session.exec(select(Customer).where(Customer.phone == phone)).first()
        if customer is None or customer.erased_at is not None:
            return None
        session.expunge(customer)
        return customer


def _speak_turn(service: Service, customer: Customer, text: str, provider_id: str) -> list[str]:
    """One spoken (or keyed) answer through the same pipeline as a text; the bot's replies, to read back."""
    # A conversation the call starts belongs on the customer's text channel all the same.
    previous = _conversation_channel(service, customer.id or 0) or customer.channel
    handled = service.handle_inbound(InboundMessage(
        channel="voice", text=text, provider_message_id=provider_id[:100], phone=customer.phone,
        received_at=service.now()))
    _keep_text_channel(service, customer.id or 0, previous)
    return [m.text for m in handled.replies if m.text]


# ------------------------------------------------------------------ webhooks


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason})


async def _call_form(request: Request, service: Service, signature: str | None,
                     *required: str) -> dict[str, str] | JSONResponse:
    """The form of a Twilio Voice webhook: signed by Twilio (else 403), with a CallSid and the `required`
    fields (else 400 naming them), or the error response to send."""
    params = await verified_form(request, service, signature)
    if isinstance(params, JSONResponse):
        return params
    missing = [name for name in ("CallSid", *required) if not params.get(name)]
    if missing:
        return _problem(400, " and ".join(missing) + (" are" if len(missing) > 1 else " is") + " required")
    return params


def _turn(request: Request) -> int:
    try:
        return max(0, min(MAX_TURNS, int(request.query_params.get("t", "0"))))
    except ValueError:
        return MAX_TURNS


@router.post("/webhooks/twilio/voice/call", summary="Twilio Voice: an outbound call was answered (signed form)")
async def call_answered(request: Request, service: ServiceDep,
                        x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    params = await _call_form(request, service, x_twilio_signature)
    if isinstance(params, JSONResponse):
        return params
    call_sid = params["CallSid"]
    found = await asyncio.to_thread(_call_message, service, request.query_params.get("m", ""))
    if found is None:
        return _problem(400, "an outbound call of Doorstep (m) is required")
    message, customer, order = found
    answered_by = params.get("AnsweredBy", "").lower()
    if answered_by.startswith("machine") or answered_by == "fax":
        await asyncio.to_thread(record_outcome, service, message.id or 0, "voicemail", call_sid)
        line = _render(service, "voice.voicemail", customer.locale, order_id=order.order_id if order else "")
        return _say(service.settings, [line], customer.locale, gather_action=None, closing=None)
    await asyncio.to_thread(record_outcome, service, message.id or 0, "answered", call_sid)
    action = _url(service.settings, "/webhooks/twilio/voice/gather", m=message.id, t=1)
    return _say(service.settings, [message.text], customer.locale, gather_action=action,
                closing=_render(service, "voice.no_input", customer.locale))


async def _caller(service: Service, params: dict[str, str]) -> Customer | None:
    """The customer whose number is calling (`From`); None for an unknown, withheld or anonymous caller."""
    try:
        phone = to_e164(params.get("From", ""), strict=False)
    except InvalidPhone:
        return None
    return await asyncio.to_thread(_customer_by_phone, service, phone) if phone else None


def _unknown_caller(service: Service) -> Response:
    return _say(service.settings, [_render(service, "voice.unknown_caller", "en")], "en",
                gather_action=None, closing=None)


@router.post("/webhooks/twilio/voice", summary="Twilio Voice: an inbound call (signed form)")
async def inbound_call(request: Request, service: ServiceDep,
                       x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    params = await _call_form(request, service, x_twilio_signature)
    if isinstance(params, JSONResponse):
        return params
    call_sid = params["CallSid"]
    customer = await _caller(service, params)
    if customer is None:
        return _unknown_caller(service)
    lines = await asyncio.to_thread(_speak_turn, service, customer, "where is my order", f"{call_sid}:0")
    action = _url(service.settings, "/webhooks/twilio/voice/gather", t=1)
    return _say(service.settings, _with_prompt(service, lines, customer.locale), customer.locale,
                gather_action=action, closing=_render(service, "voice.goodbye", customer.locale))


@router.post("/webhooks/twilio/voice/gather", summary="Twilio Voice: the caller's keypress or speech (signed form)")
async def gathered(request: Request, service: ServiceDep,
                   x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    params = await _call_form(request, service, x_twilio_signature)
    if isinstance(params, JSONResponse):
        return params
    call_sid = params["CallSid"]
    if "m" in request.query_params:  # our call: the customer is the call's, whoever the carrier says
        found = await asyncio.to_thread(_call_message, service, request.query_params["m"])
        customer = found[1] if found else None
    else:  # their call: the caller's number
        customer = await _caller(service, params)
    if customer is None:
        return _unknown_caller(service)
    digits = (params.get("Digits") or "").strip()[:8]
    turn = _turn(request)
    # The call's own question is a yes/no one (1 = yes, 2 = no); after it, a key picks the numbered
    # option a reply read out, exactly as the same digit typed in a text would.
    first_answer = "m" in request.query_params and turn == 1
    text = ((DIGIT_ANSWERS.get(digits, digits) if first_answer else digits) if digits
            else sanitise_text(params.get("SpeechResult") or "")[:1000])
    locale = customer.locale
    if not text:
        return _say(service.settings, [], locale, gather_action=None,
                    closing=_render(service, "voice.no_input", locale))
    lines = await asyncio.to_thread(_speak_turn, service, customer, text, f"{call_sid}:{turn}")
    if turn >= MAX_TURNS:
        return _say(service.settings, lines, locale, gather_action=None, closing=_render(service, "voice.goodbye", locale))
    query: dict[str, Any] = {"t": turn + 1}
    if "m" in request.query_params:
        query = {"m": request.query_params["m"], **query}
    action = _url(service.settings, "/webhooks/twilio/voice/gather", **query)
    return _say(service.settings, _with_prompt(service, lines, locale), locale, gather_action=action,
                closing=_render(service, "voice.goodbye", locale))


@router.post("/webhooks/twilio/voice/status", summary="Twilio Voice: call status callback (signed form)")
async def call_status(request: Request, service: ServiceDep,
                      x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
    params = await _call_form(request, service, x_twilio_signature, "CallStatus")
    if isinstance(params, JSONResponse):
        return params
    call_sid, status = params["CallSid"], params["CallStatus"].lower()
    found = await asyncio.to_thread(_call_message, service, request.query_params.get("m", ""))
    if found is None:
        log.info("voice status for an unknown call status=%s (ignored)", status)
        return Response(status_code=200)
    message = found[0]
    answered_by = params.get("AnsweredBy", "").lower()
    outcome: str | None = None
    if status in OUTCOME_FAILURES:
        outcome = status
    elif status == "completed":
        outcome = "voicemail" if answered_by.startswith("machine") else "answered"
    if outcome is not None:
        await asyncio.to_thread(record_outcome, service, message.id or 0, outcome, call_sid)
    return Response(status_code=200)
