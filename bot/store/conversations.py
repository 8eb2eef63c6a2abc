"""Conversation state: the customer's one conversation, and opening a flow so the next reply lands in it.

Row operations on the caller's session (they never commit). The engine uses them for every turn; the
journeys use them to open a flow with a proactive question ("reply YES to confirm"), so the answer is
read in context. Also the one renderer of a flow's `Reply` effects in the customer's language.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, select

from bot.core import replies, whatsapp_templates
from bot.core.db import session_now, try_insert
from bot.core.models import Conversation, Customer, Message, Order
from bot.core.runtime import Runtime
from bot.store import outbox
from bot.store.orders import order_view
from flows import proactive
from flows.base import Flow, Reply, StepResult
from flows.registry import FLOWS_BY_NAME
from intents import Expecting

KEPT_SLOTS = ("_locale", "_last_order", "_last_order_at")  # conversation memory that outlives a flow
# Flows a proactive message can open (`open_flow` without an explicit state).
PROACTIVE_KINDS = {"cod": "cod_confirmation", "address": "address_clarification"}


def open_flow(*, session: Session, conversation: Conversation, flow: Flow | str, order_id: str | None = None,
              now: datetime | None = None, runtime: Runtime | None = None, customer: Customer | None = None,
              state: str | None = None, slots: dict[str, Any] | None = None, expecting: Expecting | None = None,
              choices: tuple[str, ...] = (), expires_at: datetime | None = None) -> StepResult:
    """Put `conversation` into a flow's state so the customer's *next* message is its answer.

    For proactive messages (journeys): after queueing "reply YES to confirm or NO
    to cancel", call `open_flow(session=…, conversation=…, flow="cod", order_id=…, now=…)`
    and the reply "YES" lands in the COD flow's `confirm` state for that order.
    Without `state`, the state, slots and expecting come from
    `flows.proactive.open_flow` for that flow ("cod" -> cod_confirmation,
    "address" -> address_clarification), so they always match what the flow
    asks. Pass `state`/`slots`/`expecting` to open any other state explicitly.
    The flow expires after its declared timeout (or `expires_at`). Changes
    only the conversation row (caller's transaction); sends nothing. Returns the
    `StepResult` used (its effects are the opening message, for callers that
    want the text: see `opening_text`). Raises `flows.proactive.NotApplicable`
    when the order does not need that flow, ValueError for an unknown flow.
    """
    the_flow = FLOWS_BY_NAME.get(flow) if isinstance(flow, str) else flow
    if the_flow is None:
        raise ValueError(f"unknown flow {flow!r}")
    now = now or (runtime.now() if runtime is not None else session_now(session))
    if state is None:
        kind = PROACTIVE_KINDS.get(the_flow.name)
        if kind is None or order_id is None:
            raise ValueError(f"flow {the_flow.name!r} needs an explicit state to be opened")
        order = session.exec(select(Order).where(Order.order_id == order_id)).first()
        if order is None:
            raise ValueError(f"order {order_id!r} not found")
        result = proactive.open_flow(kind, order_view(order))
    else:
        if state not in the_flow.states:
            raise ValueError(f"flow {the_flow.name!r} has no state {state!r}")
        result = StepResult(next_state=state, slots={**({"order_id": order_id} if order_id else {}), **(slots or {})},
                            expecting=expecting or the_flow.states[state].expecting, choices=choices,
                            flow=the_flow.name)
    conversation.flow = the_flow.name
    conversation.state = result.next_state
    conversation.slots = {**{k: v for k, v in conversation.slots.items() if k in KEPT_SLOTS}, **dict(result.slots),
                          "_expecting": result.expecting.value, "_choices": list(result.choices),
                          **({"_buttons": payloads} if (payloads := button_payloads(result)) else {})}
    conversation.expires_at = expires_at or (now + the_flow.timeout)
    conversation.misunderstandings = 0
    conversation.updated_at = now
    session.add(conversation)
    return result


def open_proactive(*, session: Session, runtime: Runtime, customer: Customer, kind: str, order: Order,
                   conversation: Conversation | None = None, channel: str | None = None,
                   now: datetime | None = None, **enqueue: Any) -> Message | None:
    """Send a proactive opening ("reply YES to confirm or NO to cancel") *and* open its flow.

    `kind` is one of `flows.proactive.KINDS` ("cod_confirmation",
    "address_clarification"). The message is queued through the outbox in the
    caller's transaction (extra keyword arguments — `due_at`, `expires_at`,
    `dedupe_key`, `priority` — go to `outbox.enqueue_message`); the
    conversation is created if needed and put in the state that reads the
    answer. Returns the queued message, or None when `dedupe_key` was used.
    Raises `flows.proactive.NotApplicable` when the order does not need it.
    """
    now = now or runtime.now()
    result = proactive.open_flow(kind, order_view(order))
    conversation = conversation or conversation_for(session, customer, channel or customer.channel)
    session.flush()
    message: Message | None = None
    for effect in result.effects:
        if isinstance(effect, Reply):
            text = render_reply(effect, customer=customer, runtime=runtime,
                                locale=str(conversation.slots.get("_locale") or customer.locale))
            locale = str(conversation.slots.get("_locale") or customer.locale)
            definition = whatsapp_templates.for_kind(effect.template) if conversation.channel == "whatsapp" else None
            if definition is not None:  # outside the WhatsApp window: the question's own approved template
                variables = {"shop_name": runtime.shop_config.get("shop_name", ""), **dict(effect.vars)}
                enqueue["payload"] = {**(enqueue.get("payload") or {}), "whatsapp_values": definition.render_values(
                    locale, variables, local_today(runtime, customer))}
            message = outbox.enqueue_message(
                session=session, customer=customer, channel=conversation.channel, text=text,
                conversation_id=conversation.id, order_pk=order.id, template=effect.template, locale=locale,
                buttons=render_buttons(effect, customer=customer, runtime=runtime, locale=None), now=now,
                **{"priority": outbox.PRIORITY_TRANSACTIONAL, **enqueue},
            )
    if message is None and enqueue.get("dedupe_key"):
        return None  # already sent once: leave the conversation as it is
    open_flow(session=session, conversation=conversation, flow=str(result.flow), order_id=order.order_id, now=now,
              runtime=runtime)
    return message


def conversation_for(session: Session, customer: Customer, channel: str) -> Conversation:
    """The customer's one conversation, created (race-safe) when they have none yet."""
    found = session.exec(select(Conversation).where(Conversation.customer_id == customer.id)).first()
    if found is not None:
        return found
    conversation = Conversation(customer_id=customer.id, channel=channel)  # type: ignore[arg-type]
    if not try_insert(session, conversation):
        found = session.exec(select(Conversation).where(Conversation.customer_id == customer.id)).first()
        assert found is not None
        return found
    return conversation


def opening_text(result: StepResult, *, customer: Customer, runtime: Runtime) -> str:
    """The rendered opening question of a `flows.proactive.open_flow` result, in the customer's locale."""
    return " ".join(render_reply(e, customer=customer, runtime=runtime) for e in result.effects if isinstance(e, Reply))


def render_label(label: str, customer: Customer, runtime: Runtime, locale: str | None) -> str:
    """A button label: a template key, `key|name=value` (rendered with that variable, e.g. a day), or literal text."""
    key, _, variable = label.partition("|")
    name, _, value = variable.partition("=")
    if replies.has_template(key, locale or customer.locale):
        return render_reply(Reply(key, {name: value} if name else {}), customer=customer, runtime=runtime,
                            locale=locale)
    return label


def render_buttons(reply: Reply, *, customer: Customer, runtime: Runtime,
                   locale: str | None) -> list[tuple[str, str]] | None:
    """A reply's buttons as (label in the customer's language, payload), or None when it has none."""
    return [(render_label(label, customer, runtime, locale), payload) for label, payload in reply.buttons] or None


def button_payloads(result: StepResult) -> list[str]:
    """The payloads of the last choice a step offers: a typed number picks one of them (bot.core.choices)."""
    offered = [e for e in result.effects if isinstance(e, Reply) and e.buttons]
    return [payload for _, payload in offered[-1].buttons] if offered else []


def local_today(runtime: Runtime, customer: Customer) -> date:
    """The runtime clock's date where the customer is: dates in another year are shown with it."""
    try:
        return runtime.now().astimezone(ZoneInfo(customer.timezone or runtime.timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):  # a bad zone name must not stop a reply
        return runtime.now().date()


def render_reply(reply: Reply, *, customer: Customer, runtime: Runtime, locale: str | None = None) -> str:
    """One reply's text: optional prefix template, the template, optional suffix template."""
    variables = {
        # Empty = the customer's language's wording (replies.SHOP_DEFAULTS), never English "our shop".
        "shop_name": runtime.shop_config.get("shop_name", ""),
        "support_contact": runtime.shop_config.get("support_contact", ""),
        "customer_name": customer.name.split(" ")[0] if customer.name else "",
        **dict(reply.vars),
    }
    loc = locale or customer.locale
    today = local_today(runtime, customer)
    parts = [replies.render(key, loc, today=today, **variables)
             for key in (reply.prefix, reply.template, reply.suffix) if key]
    return " ".join(p for p in parts if p)
