"""The agent inbox (`/inbox`): server-rendered HTML (Jinja2 + plain CSS + a little JS).

Agents log in with the API key or a personal token (`doorstep agents add
NAME`); the session cookie, its CSRF token and the login dependencies live in
bot.web.inbox_session. Pages list open escalations by SLA and show one
conversation with its context, transcript and reply box; a small script polls
for new customer messages.

All actions go through bot.store.escalations, exactly like the API. This module
must never put customer data (phone numbers, names, order text) in a URL —
only escalation ids — and never log message text or tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Form, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from bot.conversation import agent_actions
from bot.core.db import session_now
from bot.core.errors import (
    Conflict,
    CustomerOptedOut,
    DoorstepError,
    InvalidInput,
    MessageObsolete,
    NotFound,
    NotHeld,
    TooLong,
)
from bot.core.models import Agent, Conversation, Customer, Escalation, Order
from bot.core.urls import safe_link
from bot.store import casework, escalations, holds, quick_replies, worklist
from bot.store.auth import check_api_key
from bot.store.orders import customer_orders
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep
from bot.web.inbox_session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    ActingAgentDep,
    AgentSession,
    PageAgentDep,
    PresentAgentDep,
    ScriptAgentDep,
    SearchingAgentDep,
    agent_fingerprint,
    check_csrf,
    cookie_flags,
    key_fingerprint,
    make_session_cookie,
    read_session,
    session_secret,
    to_login,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/inbox", tags=["inbox"], include_in_schema=False)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "inbox"
STATIC_DIR = Path(__file__).resolve().parent / "static"
NOTICES = {
    "sent": "Reply queued. It goes out on the customer's channel in a moment.",
    "fallback": "Reply queued. The WhatsApp 24-hour window is closed, so it goes as a template or by SMS.",
    "assigned": "You own this conversation now; the bot stays quiet.",
    "resolved": "Resolved. The bot answers this customer again.",
    "empty": "Type a reply first.",
    "too_long": f"Replies can be at most {escalations.MAX_AGENT_REPLY} characters.",
    "closed": "This escalation is already resolved; the bot owns the conversation again.",
    "opted_out": "The customer opted out of this channel; nothing was sent.",
    "held_sent": "The held message is queued. It goes out on the customer's channel in a moment.",
    "held_obsolete": "That message is obsolete (expired, or a later order status replaced it); it was not sent.",
    "held_gone": "That message is no longer held.",
    "quick_saved": "Quick reply saved. Agents see it in conversations in that language.",
    "quick_deleted": "Quick reply deleted.",
    "template_unknown": "That is not one of the shop's approved WhatsApp templates; nothing was sent.",
    "template_sent": "Template queued: it goes out on WhatsApp as the approved template.",
    "acted": "Done: the order is updated, logistics is told, and the customer gets a message in their language.",
    "noted": "Note added (internal: the customer never sees it).",
    "called": "Call outcome recorded.",
    "handed": "Assignment changed.",
    "labelled": "Priority and tags saved.",
    "snoozed": "Snoozed: it comes back at that time, or as soon as the customer writes.",
    "woken": "Back in the working views.",
}
EscalationId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
# Failed logins per client address, per running app (in memory): enough to slow guessing to a crawl.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW = 600.0


# ------------------------------------------------------------------ rendering


def _local_time(value: datetime | str | None, tz: str = "UTC", fmt: str = "%H:%M") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def _sla_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes = abs(seconds) // 60
    return f"{minutes} min overdue" if seconds < 0 else f"{minutes} min left"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["localtime"] = _local_time
    env.filters["safe_link"] = safe_link
    env.filters["sla"] = _sla_text
    env.filters["pct"] = lambda v: "" if v is None else f"{round(float(v) * 100)}%"
    return env


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response = HTMLResponse(_env().get_template(name).render(**context), status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'")
    return response


# ------------------------------------------------------------------ login


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = _render("login.html", csrf=token, error={"bad": "That key or token is not valid.",
                                                      "expired": "The form expired; please try again."}.get(error, ""))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=1800, httponly=True, samesite="strict", path="/inbox")
    return response


@router.post("/login")
def login(request: Request, session: SessionDep, service: ServiceDep,
          token: Annotated[str, Form(max_length=500)] = "", name: Annotated[str, Form(max_length=100)] = "",
          csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Log in with the API key (optionally giving a display name) or a personal agent token."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf or not expected or not hmac.compare_digest(csrf, expected):
        return RedirectResponse("/inbox/login?error=expired", status_code=status.HTTP_303_SEE_OTHER)
    client = request.client.host if request.client else "-"
    if not hasattr(request.app.state, "inbox_login_failures"):
        request.app.state.inbox_login_failures = {}
    failures: deque[float] = request.app.state.inbox_login_failures.setdefault(client, deque())
    while failures and failures[0] < time.monotonic() - LOGIN_FAILURE_WINDOW:
        failures.popleft()
    if len(failures) >= LOGIN_FAILURES_ALLOWED:
        return _render("login.html", status_code=status.HTTP_429_TOO_MANY_REQUESTS, csrf=csrf,
                       error="Too many failed attempts. Wait a few minutes, then try again.")
    token = token.strip()
    configured = service.settings.api_key.get_secret_value()
    secret = session_secret(session)
    cookie: str | None = None
    if token and check_api_key(service.db, configured, token):
        display = " ".join(name.split())[:100] or "admin"
        cookie = make_session_cookie(secret, name=display, kind="key", agent_id=None,
                                     fingerprint=key_fingerprint(session, configured), now=session_now(session))
    elif token:
        digest = hashlib.sha256(token.encode()).hexdigest()
        agent = session.exec(select(Agent).where(Agent.token_sha256 == digest)).first()
        if agent is not None and agent.revoked_at is None:
            agent.last_seen_at = session_now(session)
            session.add(agent)
            cookie = make_session_cookie(secret, name=agent.name, kind="agent", agent_id=agent.id,
                                         fingerprint=agent_fingerprint(agent), now=session_now(session))
    if cookie is None:
        failures.append(time.monotonic())
        log.info("inbox login refused")
        return RedirectResponse("/inbox/login?error=bad", status_code=status.HTTP_303_SEE_OTHER)
    response = RedirectResponse("/inbox", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, **cookie_flags(request, service.settings.public_url))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/inbox")
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, service: ServiceDep,
           csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    agent = read_session(request, session, service.settings.api_key.get_secret_value())
    if agent is not None:
        check_csrf(agent, csrf)
    response = to_login()
    response.delete_cookie(SESSION_COOKIE, path="/inbox")
    return response


@router.get("/static/inbox.css")
def stylesheet() -> Response:
    return Response((STATIC_DIR / "inbox.css").read_text(encoding="utf-8"), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=300"})


@router.get("/static/inbox.js")
def script() -> Response:
    return Response((STATIC_DIR / "inbox.js").read_text(encoding="utf-8"), media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=300"})


# ------------------------------------------------------------------ pages


def _work(session: Session, service: Any, agent: AgentSession, work: worklist.WorkFilter) -> worklist.WorkPage:
    return worklist.find_work(session=session, agent=agent.name, work=work, now=service.now())


def _work_filter(values: dict[str, str]) -> worklist.WorkFilter:
    """The filter from a query string or a posted search form. A view button pressed wins; a search
    without one looks through everything (resolved included), so nothing found hides in another view."""
    view = values.get("view") or ("all" if values.get("q") else values.get("current_view", ""))
    return worklist.work_filter(view=view, **{k: values.get(k, "") for k in FILTER_FIELDS})


FILTER_FIELDS = ("q", "reason", "channel", "language", "age", "priority", "tag", "sort")


def _list_page(request: Request, agent: AgentSession, session: Session, service: Any, values: dict[str, str]) -> Response:
    try:
        work = _work_filter(values)
    except InvalidInput as exc:
        work, error = worklist.WorkFilter(), str(exc)
    else:
        error = ""
    page = _work(session, service, agent, work)
    return _render("list.html", status_code=422 if error else 200, agent=agent, page=page, work=work, error=error,
                   views=worklist.VIEWS, view_labels=worklist.VIEW_LABELS, facets=worklist.facets(session),
                   ages=worklist.AGES, sorts=worklist.SORTS, priorities=worklist.PRIORITIES,
                   tz=service.runtime.timezone, me=agent.name,
                   notice=NOTICES.get(request.query_params.get("n", ""), ""))


@router.get("", response_class=HTMLResponse)
def inbox_list(request: Request, agent: PageAgentDep, session: ReadSessionDep, service: ServiceDep) -> Response:
    """A view of the work: filters in the query string (never a search text: that is posted)."""
    values = {k: v for k, v in request.query_params.items() if k != "q"}
    return _list_page(request, agent, session, service, values)


@router.post("", response_class=HTMLResponse)
async def inbox_search(request: Request, agent: SearchingAgentDep, session: ReadSessionDep,
                       service: ServiceDep) -> Response:
    """The search form: posted, so a phone number or a name never lands in a URL or an access log."""
    return _list_page(request, agent, session, service, await _form_values(request))


async def _form_values(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v)[:200] for k, v in form.items() if isinstance(v, str)}


def _rows_json(agent: AgentSession, session: Session, service: Any, values: dict[str, str]) -> Response:
    try:
        work = _work_filter(values)
    except InvalidInput as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    page = _work(session, service, agent, work)
    html = _env().get_template("_rows.html").render(page=page, work=work, tz=service.runtime.timezone, me=agent.name)
    return JSONResponse({"html": html, "counts": page.counts, "total": page.total, "view": work.view},
                        headers={"Cache-Control": "no-store"})


@router.get("/partials/list")
def inbox_list_rows(request: Request, agent: ScriptAgentDep, session: ReadSessionDep, service: ServiceDep) -> Response:
    """Polled by the list page: the rows and every view's count."""
    return _rows_json(agent, session, service, {k: v for k, v in request.query_params.items() if k != "q"})


@router.post("/partials/list")
async def inbox_search_rows(request: Request, agent: SearchingAgentDep, session: ReadSessionDep,
                            service: ServiceDep) -> Response:
    """Polled by the list page while a search is shown (the search text is posted, never in the URL)."""
    return _rows_json(agent, session, service, await _form_values(request))


def _conversation(session: Session, service: Any, escalation_id: int) -> dict[str, Any] | None:
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        return None
    return escalations.escalation_view(session=session, escalation=escalation, now=service.now())


def _version(view: dict[str, Any]) -> str:
    """Changes whenever anything the agent sees in the transcript or header changes."""
    lines = view["transcript"] or []
    basis = json.dumps([view["status"], view["owner"], view["assignee"],
                        [(t["id"], t["status"], t["channel"]) for t in lines]])
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def conversation_response(request: Request, agent: AgentSession, session: Session, service: Any,
                          escalation_id: int, *, error: str = "", status_code: int = 200) -> Response:
    """The conversation page (also what a refused order action renders, with its reason)."""
    escalation = session.get(Escalation, escalation_id)
    if escalation is None:
        return _render("not_found.html", status_code=404, agent=agent)
    now = service.now()
    view = escalations.escalation_view(session=session, escalation=escalation, now=now)
    customer = session.get(Customer, escalation.customer_id)
    orders = customer_orders(session=session, customer_id=escalation.customer_id)
    others = casework.others_here(session=session, escalation_id=escalation_id, agent=agent.name, now=now) \
        if escalation.status != "resolved" else []
    locale, values = _reply_values(session, service, escalation, now)
    quick = [{"label": q.label, "text": quick_replies.fill(q.text, values)}
             for q in quick_replies.for_locale(session=session, shop_config=service.runtime.shop_config,
                                               locale=locale)]
    templates = [{"kind": t.kind, "label": t.label, "text": quick_replies.template_message(t, values)[0]}
                 for t in _whatsapp_templates(service)] if view["whatsapp_window_open"] is False else []
    return _render(
        "conversation.html", status_code=status_code, agent=agent, e=view, tz=service.runtime.timezone,
        quick=quick, wa_templates=templates, reply_locale=locale, version=_version(view), notice=NOTICES.get(request.query_params.get("n", ""), ""),
        error=error, max_reply=escalations.MAX_AGENT_REPLY, escalation=escalation,
        phone=customer.phone if customer is not None and agent.sees_full_phone else None,
        notes=casework.notes(session=session, escalation_id=escalation_id),
        history=casework.customer_history(session=session, escalation=escalation),
        eligible=agent_actions.eligible_orders(orders), default_order=view["order_id"],
        windows=agent_actions.delivery_windows(service.runtime), today=agent_actions.shop_today(service.runtime, now),
        max_days=agent_actions.max_days(service.runtime), cod_reasons=agent_actions.COD_REASONS,
        outcomes=agent_actions.INVESTIGATION_OUTCOMES, call_outcomes=casework.CALL_OUTCOMES,
        priorities=worklist.PRIORITIES, agents=_agent_names(session, agent), others_here=others,
        snoozed=escalation.snoozed_until is not None and escalation.snoozed_until > now,
        csat_default=bool((service.runtime.shop_config.get("inbox") or {}).get("csat", False)),
    )


def _reply_values(session: Session, service: Any, escalation: Escalation, now: datetime) -> tuple[str, dict[str, str]]:
    """The language to write to this customer in (the one they last wrote in) and the quick replies'
    variables for this conversation."""
    customer = session.get(Customer, escalation.customer_id)
    conversation = session.get(Conversation, escalation.conversation_id)
    remembered = conversation.slots.get("_locale") if conversation is not None else None
    locale = remembered if isinstance(remembered, str) and remembered else (customer.locale if customer else "en")
    order = session.get(Order, escalation.order_pk) if escalation.order_pk else None
    today = now.astimezone(ZoneInfo(service.runtime.timezone)).date()
    return locale, quick_replies.conversation_values(customer=customer, order=order, locale=locale, today=today)


def _whatsapp_templates(service: Any) -> list[quick_replies.WhatsAppTemplate]:
    return quick_replies.whatsapp_templates(service.runtime.shop_config, service.settings.twilio.whatsapp_templates)


def _agent_names(session: Session, agent: AgentSession) -> list[str]:
    """Who an escalation can be handed to: the active agents (and whoever is logged in)."""
    names = set(session.exec(select(Agent.name).where(col(Agent.revoked_at).is_(None))))
    return sorted(names | {agent.name})


@router.get("/escalations/{escalation_id}", response_class=HTMLResponse)
def conversation_page(escalation_id: EscalationId, request: Request, agent: PageAgentDep, session: ReadSessionDep,
                      service: ServiceDep) -> Response:
    return conversation_response(request, agent, session, service, escalation_id)


@router.get("/escalations/{escalation_id}/live")
def conversation_live(escalation_id: EscalationId, request: Request, agent: ScriptAgentDep, session: ReadSessionDep,
                      service: ServiceDep) -> Response:
    """Polled by the conversation page: the transcript fragment when anything changed."""
    view = _conversation(session, service, escalation_id)
    if view is None:
        return JSONResponse({"detail": "escalation not found"}, status_code=404)
    version = _version(view)
    others = [] if view["status"] == "resolved" else casework.others_here(
        session=session, escalation_id=escalation_id, agent=agent.name, now=service.now())
    if request.query_params.get("v") == version:
        return JSONResponse({"version": version, "changed": False, "others_here": others})
    env = _env()
    lines = view["transcript"] or []
    return JSONResponse({
        "version": version, "changed": True, "status": view["status"], "owner": view["owner"], "others_here": others,
        "assignee": view["assignee"], "count": len(lines),
        "last_author": lines[-1]["author_kind"] if lines else None,
        "html": env.get_template("_messages.html").render(lines=lines, tz=service.runtime.timezone,
                                                          e=view, agent=agent),
    }, headers={"Cache-Control": "no-store"})


def _back(escalation_id: int, notice: str) -> RedirectResponse:
    return RedirectResponse(f"/inbox/escalations/{escalation_id}?n={notice}", status_code=status.HTTP_303_SEE_OTHER)


# What the agent is told when the store refuses an action, the most specific error first.
REFUSAL_NOTICES: tuple[tuple[type[DoorstepError], str], ...] = (
    (TooLong, "too_long"),
    (InvalidInput, "empty"),
    (CustomerOptedOut, "opted_out"),
    (MessageObsolete, "held_obsolete"),
    (NotHeld, "held_gone"),
    (Conflict, "closed"),
)
Refusal = (NotFound, Conflict, InvalidInput)


def _refused(exc: DoorstepError, escalation_id: int, agent: AgentSession) -> Response:
    """The page an agent's refused action leads to: not found, or the conversation with a notice."""
    if isinstance(exc, NotFound):
        return _render("not_found.html", status_code=404, agent=agent)
    if isinstance(exc, InvalidInput) and exc.field == "wa_template":
        return _back(escalation_id, "template_unknown")
    notice = next(notice for kind, notice in REFUSAL_NOTICES if isinstance(exc, kind))
    return _back(escalation_id, notice)


# A refused action returns its page rather than raising, so its transaction ends as a success does
# (committed: the agent's "last seen" moves on) and the agent stays in the inbox.


@router.post("/escalations/{escalation_id}/here")
def conversation_here(escalation_id: EscalationId, agent: PresentAgentDep, session: SessionDep,
                      service: ServiceDep) -> Response:
    """The open conversation page's heartbeat (every 10 s): "I have this open". A write of its own, so
    the page and its live poll stay reads that never wait for a writer. Answers who else has it open."""
    try:
        others = casework.here(session=session, escalation_id=escalation_id, agent=agent.name, now=service.now())
    except NotFound:
        return JSONResponse({"detail": "escalation not found"}, status_code=404)
    return JSONResponse({"others_here": others}, headers={"Cache-Control": "no-store"})


@router.post("/escalations/{escalation_id}/reply")
def conversation_reply(escalation_id: EscalationId, agent: ActingAgentDep, session: SessionDep, service: ServiceDep,
                       text: Annotated[str, Form(max_length=20_000)] = "",
                       wa_template: Annotated[str, Form(max_length=80)] = "") -> Response:
    """A free-text reply, or (WhatsApp window closed) one of the shop's approved templates, filled in."""
    now = service.now()
    try:
        picked = None
        if wa_template:
            template = next((t for t in _whatsapp_templates(service) if t.kind == wa_template), None)
            escalation = session.get(Escalation, escalation_id)
            if template is None or escalation is None:
                raise InvalidInput("wa_template", "not one of the shop's approved WhatsApp templates")
            text, variables = quick_replies.template_message(template, _reply_values(session, service, escalation,
                                                                                       now)[1])
            picked = (template.kind, variables)
        sent = escalations.agent_reply(session=session, escalation_id=escalation_id, agent=agent.name, text=text,
                                       now=now, whatsapp_template=picked)
    except Refusal as exc:
        return _refused(exc, escalation_id, agent)
    if picked is not None:
        return _back(escalation_id, "template_sent")
    return _back(escalation_id, "fallback" if sent.delivery != "free_form" else "sent")


@router.post("/escalations/{escalation_id}/held/{message_id}/send")
def conversation_send_held(escalation_id: EscalationId, message_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
                           agent: ActingAgentDep, session: SessionDep, service: ServiceDep) -> Response:
    """One click: send an automatic message held while a person owns the conversation."""
    try:
        holds.send_held(session=session, escalation_id=escalation_id, message_id=message_id, agent=agent.name,
                        now=service.now())
    except Refusal as exc:
        return _refused(exc, escalation_id, agent)
    return _back(escalation_id, "held_sent")


@router.post("/escalations/{escalation_id}/assign")
def conversation_assign(escalation_id: EscalationId, agent: ActingAgentDep, session: SessionDep,
                        service: ServiceDep) -> Response:
    try:
        escalations.assign(session=session, escalation_id=escalation_id, agent=agent.name, now=service.now())
    except Refusal as exc:
        return _refused(exc, escalation_id, agent)
    return _back(escalation_id, "assigned")


@router.post("/escalations/{escalation_id}/resolve")
def conversation_resolve(escalation_id: EscalationId, agent: ActingAgentDep, session: SessionDep, service: ServiceDep,
                         note: Annotated[str, Form(max_length=500)] = "",
                         csat_offered: Annotated[str, Form(max_length=1)] = "",
                         csat: Annotated[str, Form(max_length=1)] = "") -> Response:
    """Resolve; with the form's CSAT box, the agent decides whether the customer is asked to rate it."""
    try:
        service.resolve_escalation(session, escalation_id, agent=agent.name, note=note,
                                   csat=(csat == "1") if csat_offered else None)
    except Refusal as exc:
        return _refused(exc, escalation_id, agent)
    return RedirectResponse("/inbox?n=resolved", status_code=status.HTTP_303_SEE_OTHER)
