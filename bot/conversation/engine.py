"""The conversation engine: classify one inbound message, run its flow, apply effects.

Runs inside the gateway's transaction, with the conversation row locked.
Flows are pure; this module is the one runner that turns their effects into
rows (order changes, order events, logistics events, escalations, outbound
messages). It never sends anything itself.

The rules every flow gets from here (docs/flows.md): an interruption is
answered and the open question asked again; a flow's state expires after its
declared timeout; "start over" restarts the flow; two misunderstandings in a
row offer a person and the third escalates; replies are rendered in the
customer's language. `open_flow` / `open_proactive` let the journeys open a
flow so that the customer's answer to a proactive message lands in context.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bot.conversation import compliance
from bot.conversation.effects import apply_effects
from bot.conversation.turn import Turn
from bot.core import choices, replies
from bot.core.models import Conversation, Customer, Message, Order
from bot.core.runtime import Runtime
from bot.core.vocab import HUMAN_OWNERS, INFORMATIONAL_JOURNEYS, Owner
from bot.journeys.hooks import Journeys
from bot.store import escalations, outbox
from bot.store.conversations import KEPT_SLOTS, button_payloads
from bot.store.orders import customer_orders, customer_view, order_view
from flows.base import END, HANDOFF, EmitEvent, Escalate, Flow, FlowContext, Reply, StepResult, UpdateOrder
from flows.common import is_restart
from flows.registry import FLOWS, FLOWS_BY_NAME
from intents import Classification, Context, Expecting, Intent
from intents.sentiment import is_angry
from intents.text import marker_words

log = logging.getLogger(__name__)

LOCALES = ("en", "es", "hi-Latn")
# Answers to an open question whatever the flow: they never count as an interruption.
ANSWER_INTENTS = frozenset({"affirm", "deny", "choice", "out_of_scope"})
# Below this the model's reading is not sure enough to leave the open question for another topic.
INTERRUPT_CONFIDENCE = 0.8
# Interruptions that end the open question instead of returning to it.
SWITCH_INTENTS = frozenset({"human", "opt_out"})




def _known_private(customer: Customer, orders: list[Order]) -> tuple[str, ...]:
    """The customer's name and delivery addresses, masked before a message leaves for the optional LLM."""
    parts = [customer.name] + [str(order.shipping_address.get(key) or "") for order in orders
                               for key in ("line1", "line2", "landmark", "city", "postal_code")]
    return tuple(dict.fromkeys(part for part in parts if part))


def _classify(runtime: Runtime, conversation: Conversation, customer: Customer, text: str, now: datetime,
              orders: list[Order]) -> Classification:
    expecting = Expecting(conversation.slots.get("_expecting", Expecting.NOTHING.value)) if conversation.flow else Expecting.NOTHING
    context = Context(
        expecting=expecting,
        choices=tuple(conversation.slots.get("_choices", ())) if conversation.flow else (),
        now=now,
        timezone=customer.timezone or runtime.timezone,
        locale=customer.locale,
        private=_known_private(customer, orders),
    )
    return runtime.classifier(text, context)


def _tapped(conversation: Conversation, message: Message) -> str:
    """What the customer means: a number typed in answer to the choices just offered is that choice's payload."""
    if conversation.flow and message.channel in choices.NUMBER_READING_CHANNELS:
        picked = choices.payload_for_number(message.text, conversation.slots.get("_buttons") or ())
        if picked is not None:
            return picked
    return message.text


def handle_message(*, session: Session, runtime: Runtime, conversation: Conversation, customer: Customer,
                   message: Message, journeys: Journeys | None = None, orders: list[Order] | None = None,
                   pending_journeys: set[int] | None = None) -> Turn:
    """One turn: classify `message`, run its flow, apply the effects; `message` leaves it `processed`.

    `orders`: the customer's orders, newest first, already loaded in this transaction (a batch loads
    them for many customers in one query); read here when not given. `pending_journeys`: the orders
    that had an informational journey message waiting when the batch's transaction began (read once
    for the batch, `outbox.orders_with_pending_journey_messages`); asked here when not given."""
    now = runtime.now()
    if conversation.flow and conversation.expires_at is not None and conversation.expires_at <= now:
        _clear_flow(conversation)  # TIMEOUT: the next message is classified afresh

    if orders is None:
        orders = customer_orders(session=session, customer_id=customer.id or 0)
    classification = _classify(runtime, conversation, customer, _tapped(conversation, message), now, orders)
    message.intent = classification.intent.value
    message.confidence = round(classification.confidence, 4)
    message.entities = [e.as_dict() for e in classification.entities]
    # Marked processed here, with its classification, before the turn's first flush: one UPDATE.
    message.status = "processed"
    message.processed_at = now
    turn = Turn(classification=classification, channel=message.channel)
    locale = reply_locale(conversation, customer, classification, message.text)

    keyword_effects = compliance.pre_flow(session=session, conversation=conversation, customer=customer,
                                          message=message, classification=classification)
    if keyword_effects is not None:
        apply_effects(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
               result=StepResult(next_state=END, effects=tuple(keyword_effects)), turn=turn, now=now, locale=locale)
        return turn

    if conversation.owner in HUMAN_OWNERS:
        # A person owns this conversation: the bot stays quiet (bar an optional one-time
        # acknowledgement), and the agent sees the message.
        ack = escalations.on_inbound_while_human(session=session, conversation=conversation, customer=customer,
                                                 message=message, config=runtime.shop_config)
        apply_effects(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
               result=StepResult(next_state=END, effects=tuple(ack)), turn=turn, now=now, locale=locale)
        return turn

    if conversation.owner == Owner.RESOLVED:
        conversation.owner = Owner.BOT
    ctx = FlowContext(
        text=message.text,
        classification=classification,
        customer=customer_view(customer),
        orders=tuple(order_view(o) for o in orders),
        now=now,
        timezone=customer.timezone or runtime.timezone,
        channel=message.channel,
        config=runtime.shop_config,
        locale=locale,
        media_urls=tuple(message.media_urls),
        last_order_id=_last_order(conversation, now),
    )
    flow, result = _run_flow(conversation, ctx)
    result = _escalation_triggers(ctx, _misunderstanding_rule(conversation, ctx, result))
    turn.flow = result.flow or flow.name
    apply_effects(session=session, runtime=runtime, conversation=conversation, customer=customer, orders=orders,
           result=result, turn=turn, now=now, locale=locale)
    _advance(conversation, FLOWS_BY_NAME.get(result.flow or "", flow), result, now)
    conversation.slots = {**conversation.slots, "_locale": locale, **_remember_order(result, now)}
    _drop_obsolete_updates(session, orders, result, now, pending_journeys)
    _follow_up_address(session=session, journeys=journeys, conversation=conversation, customer=customer,
                       orders=orders, turn=turn)
    return turn


def _follow_up_address(*, session: Session, journeys: Journeys | None, conversation: Conversation,
                       customer: Customer, orders: list[Order], turn: Turn) -> None:
    """After a COD confirmation, ask for the address parts the courier still needs.

    The journeys hold the address question back while a COD question is open (one open question at a
    time); this is where it follows, asked by the journeys' one owner of that question
    (`Journeys.ask_address_clarification`: enabled, opt-out, quiet hours, expiry and dedupe included).
    """
    if journeys is None or conversation.flow is not None or conversation.owner in HUMAN_OWNERS:
        return
    for order in orders:
        if order.order_id in turn.cod_confirmed:
            message = journeys.ask_address_clarification(session, order, customer)
            if message is not None:
                turn.replies.append(message)
                return


LAST_ORDER_MEMORY = timedelta(minutes=30)


def _remember_order(result: StepResult, now: datetime) -> dict[str, Any]:
    """The order this turn was about (the last one a reply or change named), to default to next time."""
    named = [e.order_id for e in result.effects if isinstance(e, (Reply, UpdateOrder)) and e.order_id]
    return {"_last_order": named[-1], "_last_order_at": now.isoformat()} if named else {}


def _drop_obsolete_updates(session: Session, orders: list[Order], result: StepResult, now: datetime,
                           pending_before: set[int] | None = None) -> None:
    """A status update held for later (quiet hours) is obsolete once the customer has talked to the bot
    about that order: the conversation just told them. Cancelled (with the reason in the log), not sent."""
    named = {e.order_id for e in result.effects if isinstance(e, (Reply, UpdateOrder)) and e.order_id}
    if not named or not outbox.has_pending_journey_messages(
            session, [o.id for o in orders if o.order_id in named and o.id], INFORMATIONAL_JOURNEYS,
            pending_before=pending_before):
        return  # the usual turn: nothing of these orders waits in the outbox (one light query, no locks)
    reason = "obsolete: the customer talked to the bot about this order"
    for order in orders:
        if order.order_id in named:
            outbox.cancel_superseded(session, order=order, journeys=INFORMATIONAL_JOURNEYS, timers=(),
                                     reason=reason, now=now, held_only=True)
            if order.payment_method == "cod" and order.cod_status in {"confirmed", "cancelled"}:
                # The COD question waiting to go out has just been answered in the conversation.
                outbox.cancel_superseded(session, order=order, journeys=("order_confirmed",), timers=(),
                                         reason=reason + " (COD answered)", now=now)


def _last_order(conversation: Conversation, now: datetime) -> str | None:
    order_id, at = conversation.slots.get("_last_order"), conversation.slots.get("_last_order_at")
    if not isinstance(order_id, str) or not isinstance(at, str):
        return None
    try:
        recent = now - datetime.fromisoformat(at) <= LAST_ORDER_MEMORY
    except (TypeError, ValueError):
        return None
    return order_id if recent else None


def reply_locale(conversation: Conversation, customer: Customer, classification: Classification, text: str) -> str:
    """The language to answer in: the language of a real sentence, else the last one used, else the customer's."""
    language = replies.normalise_locale(classification.language)
    own = replies.normalise_locale(customer.locale)
    # Spanish and Hinglish are never confused by a person, only by a language guesser:
    # between two non-English locales the customer's own wins.
    plausible = language == "en" or own == "en" or language == own
    remembered = conversation.slots.get("_locale")
    current = remembered if isinstance(remembered, str) and remembered in LOCALES else own
    # A short mixed reply ("parcel mila hi nahi") guessed as English keeps the conversation's
    # language when it has any word of it: only a clearly English sentence switches to English.
    keeps_current = language == "en" and current != "en" and marker_words(text, current) > 0
    if language in LOCALES and len(text.split()) >= 3 and plausible and not keeps_current:
        return language
    return current


def _run_flow(conversation: Conversation, ctx: FlowContext) -> tuple[Flow, StepResult]:
    """Run the open question's step, an interruption, a restart, or the flow the intent starts."""
    active = FLOWS_BY_NAME.get(conversation.flow or "")
    state = active.states.get(conversation.state) if active is not None else None
    slots = {k: v for k, v in conversation.slots.items() if not k.startswith("_")}
    if is_restart(ctx.text):
        if active is None:
            return FLOWS[Intent.GREET], StepResult(next_state=END, effects=(Reply("core.start_over_nothing"),))
        return active, _prefixed(active.start({}, ctx), "core.start_over")
    if active is None or state is None:
        flow = FLOWS.get(ctx.intent) or FLOWS[Intent.OUT_OF_SCOPE]
        return flow, flow.start({}, ctx)
    intent = ctx.intent.value
    answers = active.intents | state.accepts | ANSWER_INTENTS
    unsure = ctx.classification.source in ("model", "llm") and ctx.classification.confidence < INTERRUPT_CONFIDENCE
    if intent in answers or ctx.classification.source == "context" or ctx.intent not in FLOWS or unsure:
        # An answer to the open question (or too unsure a reading to drop the question for).
        return active, state.step(slots, ctx)
    # An interruption: the customer asked something else in the middle of a question.
    other = FLOWS[ctx.intent]
    answer = other.start({}, ctx)
    if answer.next_state != END or answer.flow or intent in SWITCH_INTENTS or state.reprompt is None:
        return other, answer  # a new dialog (or a person, or opt-out) replaces the open question
    back = _prefixed(state.reprompt(slots, ctx), "core.back_to_question")
    return active, StepResult(next_state=back.next_state, effects=(*answer.effects, *back.effects), slots=back.slots,
                              expecting=back.expecting, choices=back.choices, understood=answer.understood)


def _prefixed(result: StepResult, prefix: str) -> StepResult:
    """The same result with `prefix` rendered before its first reply."""
    effects = list(result.effects)
    for i, effect in enumerate(effects):
        if isinstance(effect, Reply):
            effects[i] = replace(effect, prefix=prefix)
            break
    return replace(result, effects=tuple(effects))


def _misunderstanding_rule(conversation: Conversation, ctx: FlowContext, result: StepResult) -> StepResult:
    """Two misunderstandings in a row offer a human; the third hands the conversation to one."""
    if result.understood:
        return result
    count = conversation.misunderstandings + 1
    if count >= 3:
        order_id = next((str(e.order_id) for e in result.effects if isinstance(e, Reply) and e.order_id), None)
        if order_id is None and len(ctx.open_orders) == 1:
            order_id = ctx.open_orders[0].order_id
        return StepResult(next_state=HANDOFF, understood=False, effects=(
            Reply("core.escalate_misunderstood"),
            Escalate(reason="misunderstood", order_id=order_id, note="three messages in a row were not understood"),
        ))
    if count == 2:
        effects = list(result.effects)
        last = max((i for i, e in enumerate(effects) if isinstance(e, Reply)), default=None)
        last_reply = effects[last] if last is not None else None
        if last is not None and isinstance(last_reply, Reply):
            effects[last] = replace(last_reply, suffix="core.offer_human")
        else:
            effects.append(Reply("core.offer_human"))
        return replace(result, effects=tuple(effects))
    return result


def _escalation_triggers(ctx: FlowContext, result: StepResult) -> StepResult:
    """Anger and an LLM that could not answer go to a person (after whatever the flow already said)."""
    if any(isinstance(e, Escalate) for e in result.effects):
        return result
    order_id = ctx.open_orders[0].order_id if len(ctx.open_orders) == 1 else None
    if is_angry(ctx.text) and result.next_state in (END, HANDOFF):
        # Keep the flow's answer (e.g. the order status) and add a person, rather than argue with an upset customer.
        # When the flow asks something ("CANCEL MY ORDER NOW!!!" -> "Cancel A1001?"), one path only: the
        # question, so the customer's next "yes" acts instead of landing with a person who has to redo it.
        return StepResult(next_state=HANDOFF, understood=True, effects=(
            *result.effects, Reply("core.escalate_complaint"),
            Escalate(reason="complaint", order_id=order_id, note="the customer sounds upset"),
        ))
    if ctx.classification.entity("undo") is not None and result.next_state == END and not _asked_anything(result):
        # "Wait, I pressed wrong, I DO want it": a change just confirmed is taken back. The bot does not
        # guess which; a person stops it (the prepaid cancel is only a request until the shop acts).
        return StepResult(next_state=HANDOFF, understood=True, effects=(
            Reply("core.undo_to_agent"),
            Escalate(reason="undo_request", order_id=order_id, urgent=True,
                     note=f"the customer takes back a change: {ctx.text[:300]}"),
        ))
    if ctx.classification.llm_failed and not result.understood:
        return StepResult(next_state=HANDOFF, understood=False, effects=(
            Reply("core.escalate_misunderstood"),
            Escalate(reason="llm_unavailable", order_id=order_id,
                     note="the message was unclear and the LLM fallback did not answer"),
        ))
    return result


def _asked_anything(result: StepResult) -> bool:
    """Whether the step made a change or opened a question of its own (then it answered the message)."""
    return any(isinstance(e, (UpdateOrder, EmitEvent, Escalate)) for e in result.effects)


def _advance(conversation: Conversation, flow: Flow, result: StepResult, now: datetime) -> None:
    conversation.misunderstandings = 0 if result.understood else conversation.misunderstandings + 1
    if result.next_state in (END, HANDOFF) or conversation.owner in HUMAN_OWNERS:
        _clear_flow(conversation)
        if result.next_state == HANDOFF or conversation.owner in HUMAN_OWNERS:
            conversation.misunderstandings = 0  # a person has it now; start counting afresh when it comes back
    else:
        conversation.flow = flow.name
        conversation.state = result.next_state
        conversation.slots = {**dict(result.slots), "_expecting": result.expecting.value, "_choices": list(result.choices),
                              **({"_buttons": payloads} if (payloads := button_payloads(result)) else {})}
        conversation.expires_at = now + flow.timeout
    conversation.updated_at = now


def _clear_flow(conversation: Conversation) -> None:
    conversation.flow = None
    conversation.state = ""
    conversation.slots = {k: v for k, v in conversation.slots.items() if k in KEPT_SLOTS}
    conversation.expires_at = None


