"""Escalations API: list (most urgent SLA first), read with context and live transcript,
assign, reply on the customer's own channel, send a held automatic message now,
resolve (hand back to the bot).

Every route needs the API key (mounted with it in bot.app). Business rules live
in bot.store.escalations; this module only maps HTTP to them (their errors become
4xx in bot.web.errors). It never echoes message text or phone numbers in errors or logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from bot.core.errors import InvalidInput, NotFound
from bot.core.models import Escalation
from bot.store import escalations, holds, worklist
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep

router = APIRouter(prefix="/api/escalations", tags=["escalations"])

EscalationId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The escalation id (never customer data).")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignIn(_Strict):
    agent: str = Field(default="api", min_length=1, max_length=100, description="Who takes the escalation.")


class ReplyIn(_Strict):
    text: str = Field(min_length=1, max_length=escalations.MAX_AGENT_REPLY)
    agent: str = Field(default="api", min_length=1, max_length=100)


class ResolveIn(_Strict):
    agent: str = Field(default="api", min_length=1, max_length=100)
    note: str = Field(default="", max_length=500, description="Internal note, not sent to the customer.")
    csat: bool | None = Field(default=None, description="Ask the customer the one-tap CSAT question (1-5); "
                                                        "null = the shop's `inbox.csat`.")


class TranscriptLine(BaseModel):
    id: int
    direction: Literal["in", "out"]
    author: str  # "customer", "bot", or the agent's name
    author_kind: Literal["customer", "bot", "agent"]
    text: str
    intent: str | None
    confidence: float | None
    channel: str  # the channel it went out on (after any fallback)
    requested_channel: str | None
    fallback: bool
    status: str
    error_code: str | None
    media_urls: list[str]
    at: str
    plan: dict[str, Any] | None = None  # outbound: the send planner's channel, form, price and reason


class EscalationOut(BaseModel):
    id: int
    status: Literal["open", "assigned", "resolved"]
    reason: str
    note: str
    channel: str | None
    owner: str | None
    order_id: str | None
    order: dict[str, Any] | None
    customer: dict[str, Any]
    assignee: str | None
    assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    sla_due_at: datetime | None
    sla_seconds_left: int | None
    overdue: bool
    ack_sent: bool
    last_customer_message_at: datetime | None
    priority: Literal["urgent", "high", "normal", "low"] = "normal"
    tags: list[str] = Field(default_factory=list)
    snoozed_until: datetime | None = None
    csat_score: int | None = Field(default=None, description="The customer's 1-5 rating after the resolve, if asked.")
    csat_at: datetime | None = None
    whatsapp_window_open: bool | None
    notification: dict[str, Any] | None = Field(description="Delivery of the agent notification (webhook/Telegram).")
    created_at: datetime
    updated_at: datetime
    context: dict[str, Any] = Field(description="The context packet captured when the escalation opened.")
    transcript: list[TranscriptLine] | None


class EscalationList(BaseModel):
    items: list[EscalationOut]
    count: int
    total: int | None = Field(default=None, description="With a view, search or filter: how many match in all "
                                                        "(`items` holds at most `limit` of them).")
    views: dict[str, int] | None = Field(default=None, description="With `view`: how many match the search "
                                                                   "and filters in each inbox view.")


class ReplyOut(BaseModel):
    escalation_id: int
    message_id: int
    channel: str = Field(description="The customer's channel the reply was queued on.")
    delivery: Literal["free_form", "whatsapp_template_or_sms_fallback"]
    whatsapp_window_open: bool | None
    message_status: str
    owner: str


class HeldSentOut(BaseModel):
    escalation_id: int
    message_id: int
    message_status: str = Field(description="`queued`: the dispatcher sends it in a moment.")


Status = Literal["open", "unassigned", "assigned", "resolved", "all"]
View = Literal["open", "mine", "unassigned", "waiting", "overdue", "snoozed", "resolved", "all"]
Sort = Literal["sla", "priority", "newest", "oldest", "updated"]


@router.get("", response_model=EscalationList)
def list_escalations(
    session: ReadSessionDep, service: ServiceDep,
    status_: Annotated[Status | None, Query(alias="status", description="open (the default) = not resolved yet "
                                                                         "(open or assigned). Not with `view`.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    view: Annotated[View | None, Query(description="An inbox view (open = not resolved and not snoozed; mine = "
                                                   "assigned to `agent`); not with `status`.")] = None,
    q: Annotated[str, Query(description="Search: order id, tracking number, the end of the phone number (4+ "
                                        "digits), part of the name, or the escalation id.")] = "",
    reason: Annotated[str, Query(max_length=40)] = "",
    channel: Annotated[str, Query(max_length=16)] = "",
    language: Annotated[str, Query(max_length=16)] = "",
    age: Annotated[Literal["1h", "4h", "24h", "3d"] | None, Query(description="Opened longer ago than")] = None,
    priority: Annotated[Literal["urgent", "high", "normal", "low"] | None, Query()] = None,
    tag: Annotated[str, Query(max_length=30)] = "",
    sort: Annotated[Sort | None, Query(description="Default: sla (resolved view: newest)")] = None,
    agent: Annotated[str, Query(min_length=1, max_length=100, description="Whose `mine` view")] = "api",
) -> EscalationList:
    """Escalations, the most urgent SLA first (resolved: most recent first); with the inbox's views, search,
    filters and sorts (bot.store.worklist) when any of them is given."""
    now = service.now()
    filtered = view is not None or any((q, reason, channel, language, age, priority, tag, sort))
    if not filtered:
        rows = escalations.list_escalations(session=session, status=status_ or "open", limit=limit)
    else:
        if view is not None and status_ is not None:
            raise _query_error("status", "use either status or view, not both")
        try:
            work = worklist.work_filter(view=view or "all", q=q, reason=reason, channel=channel, language=language,
                                        age=age or "", priority=priority or "", tag=tag,
                                        sort=sort or ("newest" if status_ == "resolved" else ""))
        except InvalidInput as exc:
            raise _query_error(exc.field, exc.reason) from None
        also = () if view is not None else (worklist.status_predicate(status_ or "open"),)
        page = worklist.find_work(session=session, agent=agent, work=work, now=now, limit=limit, also=also)
        by_id = {e.id: e for e in session.exec(select(Escalation).where(
            col(Escalation.id).in_([row["id"] for row in page.rows] or [-1])))}
        rows = [by_id[row["id"]] for row in page.rows if row["id"] in by_id]
    items = [EscalationOut.model_validate(escalations.escalation_view(session=session, escalation=e, now=now))
             for e in rows]
    if not filtered:
        return EscalationList(items=items, count=len(items))
    return EscalationList(items=items, count=len(items), total=page.total,
                          views=dict(page.counts) if view is not None else None)


def _query_error(field: str, reason: str) -> RequestValidationError:
    """A 422 in FastAPI's shape naming the query parameter and the reason, never the value (a search may be a
    phone number)."""
    return RequestValidationError([{"loc": ("query", field), "msg": reason, "type": "value_error"}])


@router.get("/{escalation_id}", response_model=EscalationOut)
def read_escalation(escalation_id: EscalationId, session: ReadSessionDep, service: ServiceDep) -> EscalationOut:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        raise NotFound(f"escalation {escalation_id} not found")
    return EscalationOut.model_validate(escalations.escalation_view(session=session, escalation=escalation,
                                                                    now=service.now()))


@router.post("/{escalation_id}/assign", response_model=EscalationOut)
def assign_escalation(escalation_id: EscalationId, session: SessionDep, service: ServiceDep,
                      body: AssignIn | None = None) -> EscalationOut:
    """Take the escalation: the conversation's owner becomes `human`; the bot stays quiet."""
    body = body or AssignIn()
    escalation = escalations.assign(session=session, escalation_id=escalation_id, agent=body.agent, now=service.now())
    return EscalationOut.model_validate(escalations.escalation_view(session=session, escalation=escalation,
                                                                    now=service.now()))


@router.post("/{escalation_id}/reply", response_model=ReplyOut, status_code=status.HTTP_202_ACCEPTED)
def reply_to_escalation(escalation_id: EscalationId, body: ReplyIn, session: SessionDep,
                        service: ServiceDep) -> ReplyOut:
    """Queue the agent's reply on the customer's own channel (sent after commit by the dispatcher).

    On WhatsApp more than 24 h after the customer's last message, `delivery` says
    the dispatcher will use a template or fall back to SMS; the transcript then
    shows the channel actually used (`channel`, `fallback`).
    """
    sent = escalations.agent_reply(session=session, escalation_id=escalation_id, agent=body.agent, text=body.text,
                                   now=service.now())
    return ReplyOut(escalation_id=escalation_id, message_id=sent.message.id or 0, channel=sent.channel,
                    delivery=sent.delivery,
                    whatsapp_window_open=sent.whatsapp_window_open, message_status=sent.message.status, owner="human")


@router.post("/{escalation_id}/held/{message_id}/send", response_model=HeldSentOut,
             status_code=status.HTTP_202_ACCEPTED)
def send_held_message(escalation_id: EscalationId, message_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                      session: SessionDep, service: ServiceDep, body: AssignIn | None = None) -> HeldSentOut:
    """Send one automatic message that is held while a person owns the conversation (409 when it
    is not held, or obsolete: expired or superseded by a later status of the order)."""
    body = body or AssignIn()
    message = holds.send_held(session=session, escalation_id=escalation_id, message_id=message_id,
                              agent=body.agent, now=service.now())
    return HeldSentOut(escalation_id=escalation_id, message_id=message_id, message_status=message.status)


@router.post("/{escalation_id}/resolve", response_model=EscalationOut)
def resolve_escalation(escalation_id: EscalationId, session: SessionDep, service: ServiceDep,
                       body: ResolveIn | None = None) -> EscalationOut:
    """Close the escalation and hand the conversation back to the bot."""
    body = body or ResolveIn()
    escalation = service.resolve_escalation(session, escalation_id, agent=body.agent, note=body.note, csat=body.csat)
    return EscalationOut.model_validate(escalations.escalation_view(session=session, escalation=escalation,
                                                                    now=service.now()))
