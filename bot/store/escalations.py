"""Escalations: hand a conversation to a human with the full context packet, and back.

Ownership of a conversation moves `bot` -> `waiting_human` (escalated) ->
`human` (an agent assigned it or replied) -> `resolved` (hand-back; the next
customer message starts with the bot again) -> `bot`. Automatic messages due
while a person owns it are held (bot.store.holds); the hand-back releases those still
relevant.

Everything here runs inside the caller's transaction and only writes rows:
the escalation, the conversation's owner, agent replies and agent
notifications go to the outbox and are sent by the dispatcher after commit.
This module must never send anything itself, never log phone numbers or
message text, and never let the bot speak while a human owns the
conversation (bar the one optional acknowledgement).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from bot.core.db import session_now
from bot.core.errors import Conflict, CustomerOptedOut, InvalidInput, NotFound, TooLong
from bot.core.models import (
    Conversation,
    Customer,
    Escalation,
    LogisticsEvent,
    Message,
    Order,
    OrderEvent,
    Outbox,
)
from bot.core.phones import mask
from bot.core.vocab import Owner
from bot.store import outbox, planning
from bot.store.orders import order_public
from flows.base import Effect, Reply

log = logging.getLogger(__name__)

TRANSCRIPT_LIMIT = 50
ACTIONS_LIMIT = 20
MAX_AGENT_REPLY = 1600  # one SMS concatenation chain / WhatsApp message; longer is a paste accident
OPEN_STATUSES = ("open", "assigned")
STATUSES = ("open", "assigned", "resolved")
NOTIFY_KIND = "agent_notify"  # outbox kind; its sender is named in bot.wiring
AGENT_TEMPLATE_PREFIX = "agent:"  # Message.template of an agent's reply: "agent:<name>"


# ------------------------------------------------------------------ context packet


def _actions_taken(session: Session, order: Order | None, extra: list[str] | None) -> list[dict[str, Any]]:
    """What the bot (and the shop) already did for this order, newest last, so the agent does not redo it."""
    actions: list[dict[str, Any]] = [{"type": a, "at": None, "source": "bot"} for a in (extra or [])]
    if order is None:
        return actions
    events = list(session.exec(
        select(OrderEvent).where(OrderEvent.order_pk == order.id).order_by(col(OrderEvent.id).desc()).limit(ACTIONS_LIMIT)
    ))[::-1]
    actions += [{"type": e.type, "at": e.at.isoformat(), "source": e.source, "note": e.note} for e in events]
    feed = list(session.exec(
        select(LogisticsEvent).where(LogisticsEvent.order_id == order.order_id)
        .order_by(col(LogisticsEvent.seq).desc()).limit(ACTIONS_LIMIT)
    ))[::-1]
    actions += [{"type": e.type, "at": e.created_at.isoformat(), "source": "logistics_feed", "event_id": e.id}
                for e in feed]
    return actions


def context_packet(*, session: Session, conversation: Conversation, customer: Customer, order: Order | None,
                   actions: list[str] | None = None) -> dict[str, Any]:
    """Everything an agent needs so the customer never repeats themselves (a snapshot at escalation time)."""
    messages = list(session.exec(
        select(Message).where(Message.conversation_id == conversation.id)
        .order_by(col(Message.id).desc()).limit(TRANSCRIPT_LIMIT)
    ))[::-1]
    return {
        "customer": {"name": customer.name, "locale": customer.locale, "channel": conversation.channel,
                     "phone_masked": mask(customer.phone), "telegram": bool(customer.telegram_chat_id),
                     "opted_out_channels": list(customer.opted_out_channels)},
        "order": order_public(order, customer).model_dump(mode="json") if order is not None else None,
        "transcript": [
            {"direction": m.direction, "text": m.text, "intent": m.intent, "confidence": m.confidence,
             "at": m.created_at.isoformat(), "media_urls": m.media_urls, "channel": m.channel}
            for m in messages
        ],
        "slots": {k: v for k, v in conversation.slots.items() if not k.startswith("_")},
        "flow": conversation.flow,
        "state": conversation.state,
        "misunderstandings": conversation.misunderstandings,
        "actions": _actions_taken(session, order, actions),
        "media_urls": [u for m in messages for u in m.media_urls],
    }


# ------------------------------------------------------------------ bot side


def open_escalation_for(*, session: Session, conversation_id: int) -> Escalation | None:
    return session.exec(
        select(Escalation).where(Escalation.conversation_id == conversation_id, col(Escalation.status).in_(OPEN_STATUSES))
        .order_by(col(Escalation.id).desc())
    ).first()


def on_inbound_while_human(*, session: Session, conversation: Conversation, customer: Customer, message: Message,
                           config: dict[str, Any]) -> list[Effect]:
    """Effects for a customer message while a human owns the conversation.

    The message itself is already stored (the agent sees it live). The bot
    says nothing, except one acknowledgement per escalation while no agent
    has answered yet, when `escalation.ack_message` in doorstep.yaml is true
    (the default template) or a string (that text, verbatim).
    """
    now = message.created_at or session_now(session)
    escalation = open_escalation_for(session=session, conversation_id=conversation.id or 0)
    if escalation is None:
        # Owner says human but nothing is open (e.g. closed by hand in the database): reopen one,
        # so the message reaches a person instead of sitting unseen, and the bot still stays quiet.
        sla = int((config.get("escalation") or {}).get("sla_minutes", 30))
        escalation = create_escalation(session=session, conversation=conversation, customer=customer, order=None,
                                       reason="customer_waiting", sla_minutes=sla, now=now)
    escalation.last_customer_message_at = now
    escalation.snoozed_until = None  # the customer wrote: back in the working views at once
    escalation.updated_at = now
    session.add(escalation)
    ack = (config.get("escalation") or {}).get("ack_message", True)
    if not ack or conversation.owner != Owner.WAITING_HUMAN or escalation.ack_sent_at is not None:
        return []
    escalation.ack_sent_at = now
    if isinstance(ack, str):
        return [Reply("handoff.ack_custom", vars={"text": ack})]
    return [Reply("handoff.ack")]


def create_escalation(*, session: Session, conversation: Conversation, customer: Customer, order: Order | None,
                      reason: str, note: str = "", sla_minutes: int = 30, actions: list[str] | None = None,
                      now: datetime | None = None) -> Escalation:
    """Open an escalation (or return the one already open), mark the conversation as needing a human,
    queue `escalation.created` for logistics/helpdesk consumers and one agent notification."""
    now = now or session_now(session)
    existing = open_escalation_for(session=session, conversation_id=conversation.id or 0)
    if existing is not None:
        return existing
    packet = context_packet(session=session, conversation=conversation, customer=customer, order=order, actions=actions)
    sla_due_at = now + timedelta(minutes=sla_minutes)
    packet["reason"] = reason
    packet["sla_due_at"] = sla_due_at.isoformat()
    escalation = Escalation(
        conversation_id=conversation.id,  # type: ignore[arg-type]
        customer_id=customer.id,  # type: ignore[arg-type]
        order_pk=order.id if order else None,
        reason=reason[:40],
        note=note[:2000],
        context=packet,
        sla_due_at=sla_due_at,
        created_at=now,
        updated_at=now,
    )
    session.add(escalation)
    session.flush()
    conversation.owner = Owner.WAITING_HUMAN
    conversation.flow = None
    conversation.state = ""
    session.add(conversation)
    outbox.emit_event(session=session, type_="escalation.created", order_id=order.order_id if order else None,
                      order_pk=order.id if order else None, now=now,
                      data={"escalation_id": escalation.id, "reason": reason, "channel": conversation.channel,
                            "sla_due_at": sla_due_at.isoformat()})
    # Agent notification: its own outbox row, so it goes out after commit, with retries. If it
    # cannot be delivered anywhere, nothing changes here: the conversation stays `waiting_human`
    # and the escalation stays at the top of /inbox.
    session.add(Outbox(
        kind=NOTIFY_KIND, priority=outbox.PRIORITY_REPLY, due_at=now, created_at=now, updated_at=now, max_attempts=8,
        order_pk=order.id if order else None, customer_id=customer.id, expires_at=now + timedelta(days=1),
        dedupe_key=f"{NOTIFY_KIND}:{escalation.id}",
        payload={"escalation_id": escalation.id, "reason": reason, "order_id": order.order_id if order else None,
                 "channel": conversation.channel, "sla_due_at": sla_due_at.isoformat()},
    ))
    log.info("escalation opened id=%s reason=%s channel=%s", escalation.id, reason, conversation.channel)
    return escalation


# ------------------------------------------------------------------ agent side


@dataclass(frozen=True)
class AgentReply:
    """What the agent needs to know about a reply they sent: where it goes and how."""

    escalation: Escalation
    message: Message
    channel: str
    delivery: str  # "free_form" | "whatsapp_template_or_sms_fallback" (outside the 24-hour window)
    whatsapp_window_open: bool | None


def _escalation(session: Session, escalation_id: int) -> Escalation:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"escalation {escalation_id} not found")
    return escalation


def _locked_conversation(session: Session, escalation: Escalation) -> Conversation:
    """The conversation row, locked, so an agent action and an inbound message never interleave."""
    conversation = session.exec(
        select(Conversation).where(Conversation.id == escalation.conversation_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return conversation


def _clean_agent(agent: str) -> str:
    agent = " ".join(agent.split())[:100]
    if not agent:
        raise InvalidInput("agent", "must not be empty")
    return agent


def assign(*, session: Session, escalation_id: int, agent: str, now: datetime | None = None) -> Escalation:
    """An agent takes the escalation: the conversation is now owned by a human."""
    now = now or session_now(session)
    agent = _clean_agent(agent)
    escalation = _escalation(session, escalation_id)
    conversation = _locked_conversation(session, escalation)
    session.refresh(escalation)
    if escalation.status == "resolved":
        raise Conflict(f"escalation {escalation_id} is already resolved")
    escalation.status = "assigned"
    escalation.assignee = agent
    escalation.assigned_at = escalation.assigned_at or now
    escalation.updated_at = now
    conversation.owner = Owner.HUMAN
    conversation.updated_at = now
    session.add(escalation)
    session.add(conversation)
    return escalation


def answered(*, session: Session, escalation: Escalation, conversation: Conversation, agent: str,
             now: datetime) -> None:
    """An agent told the customer something (a reply, an order action): the first answer takes the
    escalation, the SLA's first response is met, and it is now the customer's turn."""
    if escalation.status == "open":
        escalation.status = "assigned"
        escalation.assignee = escalation.assignee or agent
        escalation.assigned_at = escalation.assigned_at or now
    escalation.first_response_at = escalation.first_response_at or now
    escalation.last_agent_reply_at = now
    escalation.updated_at = now
    conversation.owner = Owner.HUMAN
    conversation.updated_at = now
    session.add(escalation)
    session.add(conversation)


def locked_for_agent(*, session: Session, escalation_id: int) -> tuple[Escalation, Conversation]:
    """The escalation an agent acts on, with its conversation row locked (so the action and an inbound
    message never interleave); `Conflict` once it is resolved."""
    escalation = _escalation(session, escalation_id)
    conversation = _locked_conversation(session, escalation)
    session.refresh(escalation)
    if escalation.status == "resolved":
        raise Conflict(f"escalation {escalation_id} is resolved; the bot owns the conversation again")
    return escalation, conversation


def whatsapp_window_open(session: Session, conversation: Conversation, now: datetime) -> bool | None:
    """Whether the agent may write free-form on WhatsApp now (the dispatcher's rule); None off WhatsApp."""
    if conversation.channel != "whatsapp":
        return None
    return planning.whatsapp_window_open(session, conversation.customer_id, now)


def agent_reply(*, session: Session, escalation_id: int, agent: str, text: str,
                now: datetime | None = None, whatsapp_template: tuple[str, dict[str, str]] | None = None) -> AgentReply:
    """Queue the agent's reply on the customer's own channel (the dispatcher applies the WhatsApp
    window: a template or SMS fallback outside it). The first reply takes ownership.

    `whatsapp_template`: (kind, Content variables) of an approved template the agent picked, for a
    closed window: the message goes with that kind, so the channel sends its Content SID."""
    now = now or session_now(session)
    agent = _clean_agent(agent)
    text = text.replace("\x00", "").strip()
    if not text:
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_AGENT_REPLY:
        raise TooLong("text", f"at most {MAX_AGENT_REPLY} characters")
    escalation, conversation = locked_for_agent(session=session, escalation_id=escalation_id)
    customer = session.get(Customer, escalation.customer_id)
    assert customer is not None
    channel = conversation.channel
    if channel in customer.opted_out_channels:
        raise CustomerOptedOut(f"the customer opted out of {channel}; the reply was not queued")
    payload: dict[str, Any] = {"escalation_id": escalation.id, "agent": agent}
    template = f"{AGENT_TEMPLATE_PREFIX}{agent}"[:80]
    if whatsapp_template is not None:
        template, payload["template_vars"] = whatsapp_template[0][:80], dict(whatsapp_template[1])
    message = outbox.enqueue_message(
        session=session, customer=customer, channel=channel, text=text, conversation_id=conversation.id,
        order_pk=escalation.order_pk, template=template, now=now, payload=payload,
    )
    assert message is not None  # no dedupe key: never deduplicated
    answered(session=session, escalation=escalation, conversation=conversation, agent=agent, now=now)
    window = whatsapp_window_open(session, conversation, now)
    delivery = "whatsapp_template_or_sms_fallback" if window is False else "free_form"
    log.info("agent reply queued escalation=%s channel=%s delivery=%s", escalation.id, channel, delivery)
    return AgentReply(escalation=escalation, message=message, channel=channel, delivery=delivery,
                      whatsapp_window_open=window)


def resolve(*, session: Session, escalation_id: int, agent: str, note: str = "",
            now: datetime | None = None) -> Escalation:
    """Close the escalation and hand the conversation back: the customer's next message starts with the bot.

    The held automatic messages are released by the caller (`Service.resolve_escalation`), which also
    opens the flows their questions belong to."""
    now = now or session_now(session)
    agent = _clean_agent(agent)
    escalation = _escalation(session, escalation_id)
    conversation = _locked_conversation(session, escalation)
    session.refresh(escalation)
    if escalation.status == "resolved":
        return escalation  # resolving twice is harmless (two agents clicking at once)
    escalation.status = "resolved"
    escalation.resolved_at = now
    escalation.resolved_by = agent
    if note.strip():
        escalation.note = (f"{escalation.note}\n" if escalation.note else "") + note.strip()[:500]
        escalation.note = escalation.note[-2000:]
    escalation.updated_at = now
    conversation.owner = Owner.RESOLVED
    conversation.flow = None
    conversation.state = ""
    conversation.slots = {}
    conversation.expires_at = None
    conversation.misunderstandings = 0
    conversation.updated_at = now
    session.add(escalation)
    session.add(conversation)
    log.info("escalation resolved id=%s", escalation.id)
    return escalation


def record_csat(*, session: Session, escalation_id: int, customer_id: int, score: int, now: datetime) -> bool:
    """Store the customer's 1-5 rating of a resolved escalation they were asked about (once; only their own)."""
    escalation = session.get(Escalation, escalation_id)
    if (escalation is None or escalation.customer_id != customer_id or escalation.csat_asked_at is None
            or escalation.csat_score is not None or not 1 <= score <= 5):
        return False
    escalation.csat_score = score
    escalation.csat_at = now
    session.add(escalation)
    log.info("csat recorded escalation=%s score=%s", escalation.id, score)
    return True


# ------------------------------------------------------------------ reading


def list_escalations(*, session: Session, status: str = "open", limit: int = 200) -> list[Escalation]:
    """`open` = not resolved yet (open or assigned), most urgent SLA first; `all` = everything."""
    query = select(Escalation)
    if status == "open":
        query = query.where(col(Escalation.status).in_(OPEN_STATUSES))
    elif status == "unassigned":
        query = query.where(Escalation.status == "open")
    elif status in STATUSES:
        query = query.where(Escalation.status == status)
    elif status != "all":
        raise InvalidInput("status", "one of open, unassigned, assigned, resolved, all")
    if status == "resolved":
        query = query.order_by(col(Escalation.resolved_at).desc(), col(Escalation.id).desc())
    else:
        query = query.order_by(col(Escalation.sla_due_at), col(Escalation.id))
    return list(session.exec(query.limit(limit)))


def transcript(*, session: Session, conversation_id: int, after_id: int = 0,
               limit: int = 200) -> list[dict[str, Any]]:
    """The live transcript: every message in and out, with intents, who wrote it and how it was delivered."""
    messages = list(session.exec(
        select(Message).where(Message.conversation_id == conversation_id, col(Message.id) > after_id)
        .order_by(col(Message.id).desc()).limit(limit)
    ))[::-1]
    # The dispatcher moves a message to SMS when WhatsApp refuses it (window closed) and notes
    # `fallback_from` on its outbox row: that is what tells the agent which way it went.
    requested: dict[int, str] = {}
    sent_by: dict[int, str] = {}  # an agent's message sent as an approved WhatsApp template (its kind is no "agent:")
    out_ids = [m.id for m in messages if m.direction == "out" and m.id is not None]
    if out_ids:
        for message_id, payload in session.exec(
            select(Outbox.message_id, Outbox.payload).where(col(Outbox.message_id).in_(out_ids))
        ):
            if message_id is not None and isinstance(payload, dict) and payload.get("fallback_from"):
                requested[message_id] = str(payload["fallback_from"])
            if message_id is not None and isinstance(payload, dict) and payload.get("agent"):
                sent_by[message_id] = str(payload["agent"])
    rows = []
    for m in messages:
        template = m.template or ""
        author = "customer" if m.direction == "in" else (
            template[len(AGENT_TEMPLATE_PREFIX):] if template.startswith(AGENT_TEMPLATE_PREFIX)
            else sent_by.get(m.id or 0, "bot"))
        asked_for = requested.get(m.id or 0) or m.channel
        rows.append({
            "id": m.id, "direction": m.direction, "author": author,
            "author_kind": "customer" if m.direction == "in" else ("agent" if author != "bot" else "bot"),
            "text": m.text, "intent": m.intent, "confidence": m.confidence, "channel": m.channel,
            "requested_channel": asked_for, "fallback": m.direction == "out" and asked_for != m.channel,
            "status": m.status, "error_code": m.error_code, "media_urls": m.media_urls,
            "at": m.created_at.isoformat(),
            # The send planner's decision (channel, form, category, price, reason) for the inbox to show.
            "plan": m.plan if m.direction == "out" else None,
        })
    return rows


def notification_status(*, session: Session, escalation_id: int) -> dict[str, Any] | None:
    row = session.exec(select(Outbox).where(Outbox.dedupe_key == f"{NOTIFY_KIND}:{escalation_id}")).first()
    if row is None:
        return None
    return {"status": row.status, "attempts": row.attempts, "last_error": row.last_error}


def sla_seconds_left(escalation: Escalation, now: datetime) -> int | None:
    if escalation.sla_due_at is None:
        return None
    return int((escalation.sla_due_at - now).total_seconds())


def escalation_view(*, session: Session, escalation: Escalation, now: datetime,
                    with_transcript: bool = True) -> dict[str, Any]:
    """One escalation as the API and the inbox show it: state, SLA, context packet, live transcript."""
    conversation = session.get(Conversation, escalation.conversation_id)
    customer = session.get(Customer, escalation.customer_id)
    order = session.get(Order, escalation.order_pk) if escalation.order_pk else None
    left = sla_seconds_left(escalation, now)
    return {
        "id": escalation.id,
        "status": escalation.status,
        "reason": escalation.reason,
        "note": escalation.note,
        "channel": conversation.channel if conversation else None,
        "owner": conversation.owner if conversation else None,
        "order_id": order.order_id if order else None,
        "order": order_public(order, customer).model_dump(mode="json") if order and customer else None,
        "customer": {"name": customer.name if customer else "", "locale": customer.locale if customer else "en",
                     "phone_masked": mask(customer.phone if customer else None)},
        "assignee": escalation.assignee,
        "assigned_at": escalation.assigned_at,
        "first_response_at": escalation.first_response_at,
        "resolved_at": escalation.resolved_at,
        "resolved_by": escalation.resolved_by,
        "sla_due_at": escalation.sla_due_at,
        "sla_seconds_left": left,
        "overdue": escalation.status != "resolved" and left is not None and left < 0,
        "ack_sent": escalation.ack_sent_at is not None,
        "last_customer_message_at": escalation.last_customer_message_at,
        "priority": escalation.priority,
        "tags": list(escalation.tags),
        "snoozed_until": escalation.snoozed_until,
        "csat_score": escalation.csat_score,
        "csat_at": escalation.csat_at,
        "whatsapp_window_open": whatsapp_window_open(session, conversation, now) if conversation else None,
        "notification": notification_status(session=session, escalation_id=escalation.id or 0),
        "created_at": escalation.created_at,
        "updated_at": escalation.updated_at,
        "context": escalation.context,
        "transcript": transcript(session=session, conversation_id=escalation.conversation_id) if with_transcript else None,
    }
