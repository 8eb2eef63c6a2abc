"""The inbox's casework forms: act on the customer's order, internal notes and call outcomes,
assignment, priority and tags, snooze.

Every form is a POST with the session's CSRF token (`ActingAgentDep`: a viewer is refused). A done
action goes back to the conversation with a notice; a refused one renders the conversation with the
reason (4xx), and changes nothing. Rules live in bot.conversation.agent_actions and bot.store.casework;
this module only maps forms to them. URLs carry escalation ids only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from bot.conversation import agent_actions
from bot.core import replies
from bot.core.errors import Conflict, CustomerOptedOut, DoorstepError, InvalidInput, NotFound
from bot.store import casework, quick_replies, worklist
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep
from bot.web.inbox import NOTICES, EscalationId, _render, conversation_response
from bot.web.inbox_session import ActingAgentDep, AgentSession, PageAgentDep, SupervisorDep

router = APIRouter(prefix="/inbox", tags=["inbox"], include_in_schema=False)

Text = Annotated[str, Form(max_length=4000)]
Short = Annotated[str, Form(max_length=200)]


def _done(escalation_id: int, notice: str) -> RedirectResponse:
    return RedirectResponse(f"/inbox/escalations/{escalation_id}?n={notice}", status_code=status.HTTP_303_SEE_OTHER)


def _refused(request: Request, agent: AgentSession, session: Session, service: ServiceDep, escalation_id: int,
             exc: DoorstepError) -> Response:
    """The conversation again, with why the action was refused (nothing was changed)."""
    return conversation_response(request, agent, session, service, escalation_id, error=str(exc),
                                 status_code=_refusal_status(exc))


def _refusal_status(exc: DoorstepError) -> int:
    if isinstance(exc, NotFound):
        return status.HTTP_404_NOT_FOUND
    return status.HTTP_409_CONFLICT if isinstance(exc, (Conflict, CustomerOptedOut)) else 422


Refusal = (NotFound, Conflict, InvalidInput, CustomerOptedOut)


def _casework(request: Request, agent: AgentSession, session: Session, service: ServiceDep, escalation_id: int,
              notice: str, work: Callable[[], object]) -> Response:
    """Do `work`: back to the conversation with `notice`, or the conversation with why it was refused."""
    try:
        work()
    except Refusal as exc:
        return _refused(request, agent, session, service, escalation_id, exc)
    return _done(escalation_id, notice)


@router.post("/escalations/{escalation_id}/act")
def act_on_order(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
                 service: ServiceDep, action: Short = "", order_id: Short = "", delivery_date: Short = "",
                 delivery_window: Short = "", line1: Short = "", line2: Short = "", landmark: Short = "",
                 city: Short = "", postal_code: Short = "", reason: Short = "", outcome: Short = "",
                 note: Short = "") -> Response:
    """Reschedule, change the address, confirm or cancel COD, cancel, or close a not-received
    investigation, exactly as the bot would (validation, order event, logistics event, customer told)."""
    fields = {"delivery_date": delivery_date, "delivery_window": delivery_window, "line1": line1, "line2": line2,
              "landmark": landmark, "city": city, "postal_code": postal_code, "reason": reason, "outcome": outcome,
              "note": note}
    return _casework(request, agent, session, service, escalation_id, "acted",
                     lambda: agent_actions.act_on_order(
                         session=session, runtime=service.runtime, escalation_id=escalation_id, agent=agent.name,
                         action=action, order_id=order_id, fields=fields, now=service.now()))


@router.post("/escalations/{escalation_id}/note")
def add_note(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
             service: ServiceDep, body: Text = "") -> Response:
    return _casework(request, agent, session, service, escalation_id, "noted",
                     lambda: casework.internal_note(session=session, escalation_id=escalation_id,
                                                    agent=agent.name, body=body, now=service.now()))


@router.post("/escalations/{escalation_id}/call")
def record_call(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
                service: ServiceDep, outcome: Short = "", body: Text = "") -> Response:
    return _casework(request, agent, session, service, escalation_id, "called",
                     lambda: casework.call_outcome(session=session, escalation_id=escalation_id, agent=agent.name,
                                                   outcome=outcome, body=body, now=service.now()))


@router.post("/escalations/{escalation_id}/handover")
def hand_over(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
              service: ServiceDep, to: Short = "") -> Response:
    """Assign to someone (`to`: an agent's name), or unassign (`to` empty)."""
    return _casework(request, agent, session, service, escalation_id, "handed",
                     lambda: casework.reassign(session=session, escalation_id=escalation_id, by=agent.name,
                                               to=to.strip() or None, now=service.now()))


@router.post("/escalations/{escalation_id}/labels")
def set_labels(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
               service: ServiceDep, priority: Short = "normal", tags: Short = "") -> Response:
    return _casework(request, agent, session, service, escalation_id, "labelled",
                     lambda: casework.set_labels(session=session, escalation_id=escalation_id, agent=agent.name,
                                                 priority=priority, tags=tags, now=service.now()))


SNOOZE_PRESETS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24)}


def snooze_until(preset: str, until: str, *, now: datetime, timezone: str) -> datetime | None:
    """A preset ("1h", "4h", "24h", "tomorrow" = 9:00 tomorrow, shop time), or a local date-time from the
    form's `datetime-local` field (shop time). "wake" or nothing = None (wake up now)."""
    tz = ZoneInfo(timezone)
    if preset in SNOOZE_PRESETS:
        return now + SNOOZE_PRESETS[preset]
    if preset == "tomorrow":
        local = now.astimezone(tz) + timedelta(days=1)
        return local.replace(hour=9, minute=0, second=0, microsecond=0)
    if preset == "wake" or (not preset and not until.strip()):
        return None
    try:
        return datetime.fromisoformat(until.strip()).replace(tzinfo=tz)
    except ValueError:
        raise InvalidInput("until", "a date and time like 2026-11-30T09:00") from None


@router.post("/escalations/{escalation_id}/snooze")
def snooze(escalation_id: EscalationId, request: Request, agent: ActingAgentDep, session: SessionDep,
           service: ServiceDep, preset: Short = "", until: Short = "") -> Response:
    now = service.now()
    try:
        when = snooze_until(preset, until, now=now, timezone=service.runtime.timezone)
        casework.snooze(session=session, escalation_id=escalation_id, agent=agent.name, until=when, now=now)
    except Refusal as exc:
        return _refused(request, agent, session, service, escalation_id, exc)
    return _done(escalation_id, "snoozed" if when else "woken")


# ------------------------------------------------------------------ quick replies (supervisors manage them)


def _quick_page(request: Request, agent: AgentSession, session: Session, service: ServiceDep, *, error: str = "",
                status_code: int = 200) -> Response:
    config = service.runtime.shop_config
    by_locale = {locale: quick_replies.for_locale(session=session, shop_config=config, locale=locale)
                 for locale in replies.BABEL_LOCALES}
    return _render("quick_replies.html", status_code=status_code, agent=agent, by_locale=by_locale, error=error,
                   variables=quick_replies.VARIABLES, notice=NOTICES.get(request.query_params.get("n", ""), ""))


@router.get("/quick-replies", response_class=HTMLResponse)
def quick_replies_page(request: Request, agent: PageAgentDep, session: ReadSessionDep, service: ServiceDep) -> Response:
    """Every locale's quick replies and where each comes from; supervisors add, change and delete theirs."""
    return _quick_page(request, agent, session, service)


@router.post("/quick-replies")
def save_quick_reply(request: Request, agent: SupervisorDep, session: SessionDep, service: ServiceDep,
                     locale: Short = "", label: Short = "", text: Text = "", reply_id: Short = "") -> Response:
    try:
        quick_replies.save(session=session, locale=locale, label=label, text=text, agent=agent.name,
                           now=service.now(), reply_id=int(reply_id) if reply_id.isdigit() else None)
    except Refusal as exc:
        return _quick_page(request, agent, session, service, error=str(exc), status_code=_refusal_status(exc))
    return RedirectResponse("/inbox/quick-replies?n=quick_saved", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/quick-replies/{reply_id}/delete")
def delete_quick_reply(reply_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], request: Request,
                       agent: SupervisorDep, session: SessionDep, service: ServiceDep) -> Response:
    try:
        quick_replies.delete(session=session, reply_id=reply_id)
    except NotFound as exc:
        return _quick_page(request, agent, session, service, error=str(exc), status_code=404)
    return RedirectResponse("/inbox/quick-replies?n=quick_deleted", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, agent: PageAgentDep, session: ReadSessionDep, service: ServiceDep) -> Response:
    """The last 30 days: volume, first-response SLA, CSAT overall and per agent."""
    return _render("report.html", agent=agent, r=worklist.report(session=session, now=service.now()))
