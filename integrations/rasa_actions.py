"""Rasa action server inside Doorstep: `POST /rasa/webhook?token=DOORSTEP_API_KEY`.

Speaks the Rasa action server protocol with rasa-sdk's own `ActionExecutor`
(imported on first use: rasa-sdk is the optional `[rasa]` extra and brings
Sanic, gRPC and OpenTelemetry; its Sanic server is never started, so nothing
listens on 0.0.0.0). An existing Rasa assistant points `endpoints.yml`
`action_endpoint` here and gets Doorstep's order actions:

    action_order_status, action_reschedule_delivery, action_update_address,
    action_confirm_cod, action_cancel_order, action_handoff

Each action drives the *same* flow steps the SMS/WhatsApp/Telegram bot uses
(`flows.registry.FLOWS`), with Rasa's slots as the customer's answers, and
applies the resulting effects with the engine's one effect runner, in one
transaction with the customer's conversation locked. Rasa has already
confirmed with the customer before it calls a changing action, so a flow's
read-back question is answered "yes"; any other question (which order?
which day? a date the shop cannot deliver on) goes back to Rasa as the
flow's own reply, with the slot to re-ask cleared.

The customer is `tracker.sender_id` when it is a phone number (the channel's
identity). A phone typed into the `phone` slot counts only after the customer
types back a one-time code sent to it by SMS (`integrations.rasa_verification`):
anyone can type anyone's number. A customer only ever sees or changes their own
orders. Error responses never echo the
request body, and nothing here logs phone numbers or addresses.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, select

from bot.conversation.effects import apply_effects
from bot.conversation.turn import Turn
from bot.core import jsonbody
from bot.core.db import try_insert
from bot.core.models import Conversation, Customer, Order
from bot.core.phones import InvalidPhone, mask, to_e164
from bot.store.auth import check_api_key
from bot.store.conversations import render_reply
from bot.store.orders import customer_orders, customer_view, find_customer, order_view
from flows.base import END, HANDOFF, FlowContext, Reply, StepResult
from integrations.rasa_verification import Verification, verify
from intents import Classification, Context, Expecting, Intent, classify
from intents.types import Entity

if TYPE_CHECKING:
    from bot.service import Service

log = logging.getLogger(__name__)

router = APIRouter(tags=["rasa"])

MAX_BODY_BYTES = 2_000_000
MAX_AUTO_CONFIRMS = 3
ADDRESS_SLOTS = ("flat_number", "floor", "building", "landmark", "postal_code")


@dataclass(frozen=True)
class ActionSpec:
    """How one Rasa action maps onto a Doorstep flow."""

    name: str
    intent: Intent
    changes_order: bool  # answer the flow's read-back "yes" (Rasa confirmed already)
    clears_on_question: tuple[str, ...] = ()  # slots to reset when the flow asks again
    extra_slots: tuple[str, ...] = field(default_factory=tuple)


ACTIONS: dict[str, ActionSpec] = {spec.name: spec for spec in (
    ActionSpec("action_order_status", Intent.WISMO, changes_order=False),
    ActionSpec("action_reschedule_delivery", Intent.RESCHEDULE, changes_order=True,
               clears_on_question=("delivery_date",)),
    ActionSpec("action_update_address", Intent.CHANGE_ADDRESS, changes_order=True,
               clears_on_question=("address",)),
    ActionSpec("action_confirm_cod", Intent.COD_CONFIRM, changes_order=True),
    ActionSpec("action_cancel_order", Intent.CANCEL_ORDER, changes_order=True),
    ActionSpec("action_handoff", Intent.HUMAN, changes_order=True),
)}


# ------------------------------------------------------------------ the domain side (no rasa-sdk here)


@dataclass
class ActionOutcome:
    texts: list[str]
    slots: dict[str, Any]
    changed: bool = False
    escalated: bool = False


def _slot(slots: Mapping[str, Any], name: str) -> str | None:
    value = slots.get(name)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, list):
        value = value[0] if value else None
    text = str(value).strip() if value is not None else ""
    return text[:300] or None


def as_phone(value: str | None, default_country: str) -> str | None:
    if not value:
        return None
    try:
        return to_e164(str(value), default_region=default_country)
    except (InvalidPhone, TypeError, ValueError):
        return None


def _identify(session: Session, service: Service, sender_id: str | None, slots: Mapping[str, Any],
              latest_text: str) -> Verification:
    """The phone to act for: the sender id when it is one, else a phone proven with a one-time code."""
    country = service.settings.default_country
    phone = as_phone(sender_id, country)
    if phone is not None or not sender_id:
        return Verification(phone=phone)
    return verify(session, sender_id=str(sender_id), claimed_phone=as_phone(_slot(slots, "phone"), country),
                  latest_text=latest_text, code_slot=_slot(slots, "verification_code"),
                  customer_for=lambda p: find_customer(session=session, phone=p), now=service.now())


def _extract(text: str, expecting: Expecting, service: Service, customer: Customer) -> tuple[Entity, ...]:
    """Doorstep's own entity extractors on a slot value ("saturday evening", "flat 4B")."""
    context = Context(expecting=expecting, now=service.now(), timezone=customer.timezone or service.runtime.timezone,
                      locale=customer.locale)
    return classify(text, context).entities


def _entities(spec: ActionSpec, slots: Mapping[str, Any], service: Service, customer: Customer) -> list[Entity]:
    entities: list[Entity] = []
    order_id = _slot(slots, "order_id")
    if order_id:
        entities.append(Entity("order_ref", order_id.lstrip("#")))
    if spec.intent is Intent.RESCHEDULE:
        day, window = _slot(slots, "delivery_date"), _slot(slots, "delivery_window")
        if day:
            try:
                entities.append(Entity("date", date.fromisoformat(day[:10]).isoformat()))
            except ValueError:
                entities.extend(e for e in _extract(day, Expecting.DATE, service, customer) if e.type == "date")
        if window:
            entities.extend(e for e in _extract(window, Expecting.DATE, service, customer) if e.type == "time_window")
    if spec.intent is Intent.CHANGE_ADDRESS:
        for name in ADDRESS_SLOTS:
            value = _slot(slots, name)
            if value:
                entities.append(Entity(name, value))
        free_text = _slot(slots, "address")
        if free_text:
            have = {e.type for e in entities}
            entities.extend(e for e in _extract(free_text, Expecting.ADDRESS_PART, service, customer)
                            if e.type in ADDRESS_SLOTS and e.type not in have)
    if spec.intent is Intent.COD_CONFIRM:
        entities.append(Entity("yes_no", "yes"))
    return entities


def _context(service: Service, customer: Customer, orders: list[Order], classification: Classification,
             text: str) -> FlowContext:
    return FlowContext(text=text, classification=classification, customer=customer_view(customer),
                       orders=tuple(order_view(o) for o in orders), now=service.now(),
                       timezone=customer.timezone or service.runtime.timezone, channel="rasa",
                       config=service.runtime.shop_config)


def _conversation(session: Session, service: Service, customer: Customer) -> Conversation:
    conversation: Conversation | None = session.exec(select(Conversation).where(Conversation.customer_id == customer.id)).first()
    if conversation is None:
        conversation = Conversation(customer_id=customer.id, channel=customer.channel)  # type: ignore[arg-type]
        if not try_insert(session, conversation):  # the customer's first SMS raced us: use that one
            conversation = session.exec(select(Conversation).where(Conversation.customer_id == customer.id)).one()
    service.db.lock_row(session, "conversation", conversation.id or 0)
    session.refresh(conversation)
    return conversation


def run_action(service: Service, spec: ActionSpec, *, sender_id: str | None, slots: Mapping[str, Any],
               latest_text: str) -> ActionOutcome:
    """Run one Doorstep action for one customer; one transaction. Pure of rasa-sdk."""
    from flows.registry import FLOWS

    service.runtime.warm_up()  # slot values are classified inside the transaction below
    with service.db.session() as session:
        verification = _identify(session, service, sender_id, slots, latest_text)
        if verification.reply_key is not None:
            text = render_reply(Reply(verification.reply_key), customer=Customer(locale="en"), runtime=service.runtime)
            return ActionOutcome([text], {"verification_code": None})
        phone = verification.phone
        customer = find_customer(session=session, phone=phone) if phone else None
        if customer is None or customer.erased_at is not None:
            log.info("rasa %s: no customer for sender %s", spec.name, mask(phone))
            reply = Reply("no_order")
            placeholder = customer or Customer(locale="en")
            return ActionOutcome([render_reply(reply, customer=placeholder, runtime=service.runtime)], {})
        conversation = _conversation(session, service, customer)
        orders = customer_orders(session=session, customer_id=customer.id or 0)
        entities = _entities(spec, slots, service, customer)
        first = Classification(intent=spec.intent, confidence=1.0, entities=tuple(entities), source="rasa")
        text = _slot(slots, "address") or latest_text[:500]
        ctx = _context(service, customer, orders, first, text)
        flow = FLOWS.get(spec.intent) or FLOWS[Intent.HUMAN]
        result = flow.start({}, ctx)
        effects = [e for e in result.effects if not isinstance(e, Reply)]
        confirms = 0
        while (spec.changes_order and result.next_state not in (END, HANDOFF) and result.expecting is Expecting.YES_NO
               and result.next_state in flow.states and confirms < MAX_AUTO_CONFIRMS):
            # Rasa confirmed with the customer before calling us: this read-back is answered "yes".
            yes = Classification(intent=Intent.AFFIRM, confidence=1.0, entities=(Entity("yes_no", "yes"),),
                                 source="rasa")
            result = flow.states[result.next_state].step(dict(result.slots), _context(service, customer, orders, yes, "yes"))
            effects.extend(e for e in result.effects if not isinstance(e, Reply))
            confirms += 1
        applied = StepResult(next_state=END, effects=tuple(effects))
        turn = Turn(classification=first)
        apply_effects(session=session, runtime=service.runtime, conversation=conversation, customer=customer,
               orders=orders, result=applied, turn=turn, now=service.now())
        texts = [render_reply(e, customer=customer, runtime=service.runtime)
                 for e in result.effects if isinstance(e, Reply)]
        finished = result.next_state in (END, HANDOFF)
        out_slots: dict[str, Any] = {}
        order_id = _order_in_play(result, entities)
        if order_id:
            out_slots["order_id"] = order_id
            order = next((o for o in orders if o.order_id == order_id), None)
            if order is not None:
                out_slots["order_status"] = order.status
        if not finished:
            for name in spec.clears_on_question:
                out_slots[name] = None
            if result.next_state == "choose_order":
                out_slots["order_id"] = None
        changed = any(type(e).__name__ in {"UpdateOrder", "EmitEvent"} for e in effects)
        log.info("rasa %s customer=%s finished=%s changed=%s escalated=%s", spec.name, mask(phone), finished, changed,
                 turn.escalated)
        return ActionOutcome(texts, out_slots, changed=changed, escalated=turn.escalated)


def _order_in_play(result: StepResult, entities: list[Entity]) -> str | None:
    slot_order = result.slots.get("order_id") if isinstance(result.slots, Mapping) else None
    if slot_order:
        return str(slot_order)
    for effect in result.effects:
        order_id = getattr(effect, "order_id", None)
        if order_id:
            return str(order_id)
    return next((str(e.value) for e in entities if e.type == "order_ref"), None)


# ------------------------------------------------------------------ the rasa-sdk side


def build_executor(service: Service) -> Any:
    """rasa-sdk's ActionExecutor with Doorstep's actions registered (imports rasa-sdk)."""
    from rasa_sdk import Action
    from rasa_sdk.events import ConversationPaused, SlotSet
    from rasa_sdk.executor import ActionExecutor

    class DoorstepAction(Action):  # type: ignore[misc]
        def __init__(self, spec: ActionSpec) -> None:
            self.spec = spec

        def name(self) -> str:
            return self.spec.name

        async def run(self, dispatcher: Any, tracker: Any, domain: Any) -> list[dict[str, Any]]:
            latest = tracker.latest_message or {}
            outcome = await asyncio.to_thread(
                run_action, service, self.spec, sender_id=tracker.sender_id, slots=dict(tracker.slots or {}),
                latest_text=str(latest.get("text") or ""))
            for text in outcome.texts:
                dispatcher.utter_message(text=text)
            events: list[dict[str, Any]] = [SlotSet(key, value) for key, value in outcome.slots.items()]
            if outcome.escalated:
                # A person takes over in Doorstep's inbox: Rasa stops predicting for this conversation.
                events.append(ConversationPaused())
            return events

    executor = ActionExecutor()
    for spec in ACTIONS.values():
        executor.register_action(DoorstepAction(spec))
    return executor


def _executor(request: Request) -> Any:
    state = request.app.state
    executor = getattr(state, "rasa_executor", None)
    if executor is None:
        executor = build_executor(state.service)
        state.rasa_executor = executor
    return executor


def _read_body(raw: bytes, encoding: str | None) -> Any:
    if (encoding or "").lower() == "deflate":
        # Rasa compresses action calls when COMPRESS_ACTION_SERVER_REQUEST=true; bounded against zip bombs.
        inflater = zlib.decompressobj()
        raw = inflater.decompress(raw, MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise ValueError("too large")
    return jsonbody.loads(raw)


@router.post("/rasa/webhook", responses={
    400: {"description": "not an action call"}, 401: {"description": "missing or wrong token"},
    404: {"description": "unknown action (rasa-sdk's error shape)"}, 413: {"description": "body too large"}})
async def rasa_webhook(request: Request, token: str = Query("", description="DOORSTEP_API_KEY")) -> JSONResponse:
    """Rasa action server protocol: run one of Doorstep's actions and return events and responses."""
    service = request.app.state.service
    if not check_api_key(service.db, service.settings.api_key.get_secret_value(), token):
        return JSONResponse(status_code=401, content={"error": "missing or invalid ?token= (DOORSTEP_API_KEY)"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return JSONResponse(status_code=413, content={"error": "request body too large"})
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return JSONResponse(status_code=413, content={"error": "request body too large"})
    try:
        action_call = _read_body(raw, request.headers.get("content-encoding"))
    except (ValueError, zlib.error, UnicodeDecodeError):
        return JSONResponse(status_code=400, content={"error": "Invalid body request"})
    if not isinstance(action_call, dict) or not isinstance(action_call.get("tracker"), dict) \
            or not isinstance(action_call.get("next_action", ""), str):
        return JSONResponse(status_code=400, content={"error": "Invalid body request"})
    if not action_call.get("tracker", {}).get("sender_id") and action_call.get("sender_id"):
        action_call["tracker"]["sender_id"] = action_call["sender_id"]

    try:
        from rasa_sdk.interfaces import (
            ActionExecutionRejection,
            ActionMissingDomainException,
            ActionNotFoundException,
        )
    except ImportError:  # the optional extra is missing: say how to get it rather than a 500
        return JSONResponse(status_code=503, content={
            "error": "the Rasa action server needs rasa-sdk: pip install 'doorstep[rasa]' (make run installs it)"})

    action_name = str(action_call.get("next_action") or "")[:100]
    if action_name and action_name not in ACTIONS:
        # rasa-sdk's shape and message, without touching the executor (or echoing the body).
        error = ActionNotFoundException(action_name)
        return JSONResponse(status_code=404, content={"error": error.message, "action_name": action_name})
    try:
        result = await _executor(request).run(action_call)
    except ActionNotFoundException as exc:
        return JSONResponse(status_code=404, content={"error": exc.message, "action_name": exc.action_name})
    except ActionExecutionRejection as exc:
        return JSONResponse(status_code=400, content={"error": exc.message, "action_name": exc.action_name})
    except ActionMissingDomainException as exc:
        return JSONResponse(status_code=449, content={"error": exc.message, "action_name": exc.action_name})
    except (KeyError, TypeError, ValueError, AttributeError):
        log.info("rasa action call %s could not be read", action_name or "(none)")
        return JSONResponse(status_code=400, content={"error": "Invalid body request", "action_name": action_name})
    return JSONResponse(status_code=200, content=result.model_dump() if result is not None else None)


@router.get("/rasa/actions")
async def rasa_actions(request: Request, token: str = Query("", description="DOORSTEP_API_KEY")) -> JSONResponse:
    """The actions this endpoint runs (like rasa-sdk's `GET /actions`)."""
    service = request.app.state.service
    if not check_api_key(service.db, service.settings.api_key.get_secret_value(), token):
        return JSONResponse(status_code=401, content={"error": "missing or invalid ?token= (DOORSTEP_API_KEY)"})
    return JSONResponse(content=[{"name": name} for name in ACTIONS])
