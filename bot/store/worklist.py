"""Finding work in the inbox: views (mine, unassigned, waiting on customer, overdue, snoozed,
resolved, all) with their counts, search (order id, phone, name, tracking number, escalation id),
filters (reason, channel, language, age, priority, tag) and sorting (SLA first by default).

One query lists a page of escalations with what a row shows; one more counts every view under the
same search and filters. Reads only. The search text can be a phone number: it is never logged,
and callers never put it in a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.core.errors import InvalidInput
from bot.core.models import Conversation, Customer, Escalation, Message, Order
from bot.store.escalations import OPEN_STATUSES

# The working views, in the order the inbox shows them. `open` (not resolved, not snoozed) is the default.
VIEWS = ("open", "mine", "unassigned", "waiting", "overdue", "snoozed", "resolved", "all")
VIEW_LABELS = {"open": "Open", "mine": "Mine", "unassigned": "Unassigned", "waiting": "Waiting on customer",
               "overdue": "Overdue", "snoozed": "Snoozed", "resolved": "Resolved", "all": "All"}
SORTS = ("sla", "priority", "newest", "oldest", "updated")
PRIORITIES = ("urgent", "high", "normal", "low")
# "Older than" filters, in hours.
AGES = {"1h": 1, "4h": 4, "24h": 24, "3d": 72}
MAX_QUERY = 100
PAGE = 100


@dataclass(frozen=True)
class WorkFilter:
    """What the agent asked to see. Every field is validated by `work_filter`."""

    view: str = "open"
    q: str = ""
    reason: str = ""
    channel: str = ""
    language: str = ""
    age: str = ""
    priority: str = ""
    tag: str = ""
    sort: str = "sla"


def work_filter(*, view: str = "open", q: str = "", reason: str = "", channel: str = "", language: str = "",
                age: str = "", priority: str = "", tag: str = "", sort: str = "") -> WorkFilter:
    """A `WorkFilter` from form or query values; an unknown view, sort, age or priority is an `InvalidInput`."""
    view = view or "open"
    if view not in VIEWS:
        raise InvalidInput("view", f"one of {', '.join(VIEWS)}")
    sort = sort or ("newest" if view == "resolved" else "sla")
    if sort not in SORTS:
        raise InvalidInput("sort", f"one of {', '.join(SORTS)}")
    if age and age not in AGES:
        raise InvalidInput("age", f"one of {', '.join(AGES)}")
    if priority and priority not in PRIORITIES:
        raise InvalidInput("priority", f"one of {', '.join(PRIORITIES)}")
    q = " ".join(q.replace("\x00", "").split())
    if len(q) > MAX_QUERY:
        raise InvalidInput("q", f"at most {MAX_QUERY} characters")
    return WorkFilter(view=view, q=q, reason=reason.strip()[:40], channel=channel.strip()[:16],
                      language=language.strip()[:16], age=age, priority=priority, tag=tag.strip().lower()[:30],
                      sort=sort)


def _view_predicates(agent: str, now: datetime) -> dict[str, Any]:
    E = Escalation
    not_resolved = col(E.status).in_(OPEN_STATUSES)
    awake = sa.or_(col(E.snoozed_until).is_(None), col(E.snoozed_until) <= now)
    active = sa.and_(not_resolved, awake)
    # The agent answered after the customer last wrote (or since it opened): the customer's turn.
    customer_turn = sa.and_(col(E.last_agent_reply_at).is_not(None),
                            col(E.last_agent_reply_at) > sa.func.coalesce(col(E.last_customer_message_at),
                                                                          col(E.created_at)))
    return {
        "open": active,
        "mine": sa.and_(active, col(E.assignee) == agent),
        "unassigned": sa.and_(active, col(E.status) == "open"),
        "waiting": sa.and_(active, customer_turn),
        "overdue": sa.and_(active, col(E.sla_due_at) < now),
        "snoozed": sa.and_(not_resolved, sa.not_(awake)),
        "resolved": col(E.status) == "resolved",
        "all": sa.true(),
    }


def _search(q: str) -> Any:
    """Escalations whose customer matches `q`: an order id or tracking number of any of their orders,
    the end of their phone number (4+ digits), a part of their name, or the escalation's own id."""
    lowered = q.lower().lstrip("#")
    by_order = select(Order.customer_id).where(sa.or_(sa.func.lower(Order.order_id) == lowered,
                                                      sa.func.lower(Order.tracking_number) == lowered))
    terms = [col(Escalation.customer_id).in_(by_order),
             sa.func.lower(Customer.name).contains(q.lower(), autoescape=True)]
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 4 and re.fullmatch(r"[\d\s+().-]+", q):
        terms.append(col(Customer.phone).endswith(digits, autoescape=True))
    if lowered.isdigit() and len(lowered) <= 9:
        terms.append(col(Escalation.id) == int(lowered))
    return sa.or_(*terms)


def _filters(f: WorkFilter, now: datetime) -> list[Any]:
    where: list[Any] = []
    if f.q:
        where.append(_search(f.q))
    if f.reason:
        where.append(col(Escalation.reason) == f.reason)
    if f.channel:
        where.append(col(Conversation.channel) == f.channel)
    if f.language:
        where.append(col(Customer.locale) == f.language)
    if f.age:
        where.append(col(Escalation.created_at) <= now - timedelta(hours=AGES[f.age]))
    if f.priority:
        where.append(col(Escalation.priority) == f.priority)
    if f.tag:
        # Tags are a JSON list of lower-case words: match the quoted word in its text.
        where.append(sa.cast(Escalation.tags, sa.Text).contains(f'"{f.tag}"', autoescape=True))
    return where


def _order_by(sort: str) -> list[Any]:
    E = Escalation
    rank = sa.case({p: i for i, p in enumerate(PRIORITIES)}, value=col(E.priority), else_=len(PRIORITIES))
    due_last_if_none = sa.case((col(E.sla_due_at).is_(None), 1), else_=0)
    orders: dict[str, list[Any]] = {
        "sla": [due_last_if_none, col(E.sla_due_at), col(E.id)],
        "priority": [rank, due_last_if_none, col(E.sla_due_at), col(E.id)],
        "newest": [col(E.created_at).desc(), col(E.id).desc()],
        "oldest": [col(E.created_at), col(E.id)],
        "updated": [col(E.updated_at).desc(), col(E.id).desc()],
    }
    return orders[sort]


def _joined(query: Any) -> Any:
    return (query.join(Conversation, col(Conversation.id) == Escalation.conversation_id)
            .join(Customer, col(Customer.id) == Escalation.customer_id))


@dataclass(frozen=True)
class WorkPage:
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    total: int  # in the view asked for (the page shows at most PAGE of them)


def status_predicate(status: str) -> Any:
    """The API's older `status` filter (open = open or assigned, unassigned, assigned, resolved, all) as a
    condition the search and filters combine with (`find_work(also=…)`)."""
    if status == "open":
        return col(Escalation.status).in_(OPEN_STATUSES)
    if status == "unassigned":
        return col(Escalation.status) == "open"
    if status in ("assigned", "resolved"):
        return col(Escalation.status) == status
    if status == "all":
        return sa.true()
    raise InvalidInput("status", "one of open, unassigned, assigned, resolved, all")


def find_work(*, session: Session, agent: str, work: WorkFilter, now: datetime, limit: int = PAGE,
              also: tuple[Any, ...] = ()) -> WorkPage:
    """One page of the view with its rows, and the count of every view under the same search and filters
    (and the conditions `also`, e.g. `status_predicate`)."""
    views = _view_predicates(agent, now)
    where = [*_filters(work, now), *also]
    counts_query = _joined(select(*(sa.func.sum(sa.case((predicate, 1), else_=0)).label(name)
                                    for name, predicate in views.items())).select_from(Escalation))
    counted = session.exec(counts_query.where(*where)).one()
    counts = {name: int(value or 0) for name, value in zip(views, counted, strict=True)}
    query = _joined(select(Escalation, col(Conversation.channel), col(Customer.name), col(Customer.locale),  # type: ignore[call-overload]  # sqlmodel types up to 4 columns
                           col(Order.order_id))
                    .outerjoin(Order, col(Order.id) == Escalation.order_pk))
    query = query.where(views[work.view], *where).order_by(*_order_by(work.sort)).limit(limit)
    found = list(session.exec(query))
    last_said = _last_customer_lines(session, [e.conversation_id for e, *_ in found])
    rows = [_row(escalation, channel, name, locale, order_id, last_said.get(escalation.conversation_id, (0, "")), now)
            for escalation, channel, name, locale, order_id in found]
    return WorkPage(rows=rows, counts=counts, total=counts[work.view])


def _last_customer_lines(session: Session, conversation_ids: list[int]) -> dict[int, tuple[int, str]]:
    """What each customer last wrote, with its message id (one query for the page)."""
    if not conversation_ids:
        return {}
    latest = (select(sa.func.max(Message.id)).where(col(Message.conversation_id).in_(set(conversation_ids)),
                                                    Message.direction == "in")
              .group_by(col(Message.conversation_id)))
    found = session.exec(select(Message.conversation_id, Message.id, Message.text).where(col(Message.id).in_(latest)))
    return {conversation_id: (message_id or 0, text[:140]) for conversation_id, message_id, text in found
            if conversation_id is not None}


def _row(e: Escalation, channel: str, name: str, locale: str, order_id: str | None, last_said: tuple[int, str],
         now: datetime) -> dict[str, Any]:
    left = int((e.sla_due_at - now).total_seconds()) if e.sla_due_at is not None else None
    resolved = e.status == "resolved"
    customer_last = e.last_customer_message_at or e.created_at
    return {
        "id": e.id, "status": e.status, "reason": e.reason, "channel": channel, "order_id": order_id,
        "customer": {"name": name, "locale": locale}, "assignee": e.assignee, "priority": e.priority,
        "tags": list(e.tags), "sla_due_at": e.sla_due_at, "sla_seconds_left": left,
        "overdue": not resolved and left is not None and left < 0,
        "snoozed_until": e.snoozed_until if e.snoozed_until is not None and e.snoozed_until > now else None,
        # The customer wrote last and nobody has answered since: they are waiting for us.
        "waiting": not resolved and (e.last_agent_reply_at is None or e.last_agent_reply_at < customer_last),
        "waiting_on_customer": not resolved and e.last_agent_reply_at is not None
        and e.last_agent_reply_at > customer_last,
        "last_said_id": last_said[0], "last_text": last_said[1], "created_at": e.created_at, "resolved_at": e.resolved_at,
        "resolved_by": e.resolved_by, "csat_score": e.csat_score,
    }


def facets(session: Session) -> dict[str, list[str]]:
    """The values the filters offer: the reasons, channels and languages escalations have had."""
    return {
        "reason": sorted(r for r in session.exec(select(Escalation.reason).distinct()) if r),
        "channel": sorted(c for c in session.exec(
            select(Conversation.channel).join(Escalation, col(Escalation.conversation_id) == Conversation.id)
            .distinct()) if c),
        "language": sorted(c for c in session.exec(
            select(Customer.locale).join(Escalation, col(Escalation.customer_id) == Customer.id).distinct()) if c),
    }


def report(*, session: Session, now: datetime, days: int = 30) -> dict[str, Any]:
    """The last `days` of escalations: volume, first-response SLA, CSAT overall and per agent."""
    since = now - timedelta(days=days)
    rows = list(session.exec(select(Escalation).where(col(Escalation.created_at) >= since)))
    answered = [e for e in rows if e.first_response_at is not None]
    met = [e for e in answered if e.sla_due_at is None or e.first_response_at <= e.sla_due_at]  # type: ignore[operator]
    waits = sorted((e.first_response_at - e.created_at).total_seconds() / 60 for e in answered)  # type: ignore[operator]
    rated = [e for e in rows if e.csat_score is not None]
    by_agent: dict[str, dict[str, Any]] = {}
    for e in rows:
        if e.status == "resolved" and e.resolved_by:
            entry = by_agent.setdefault(e.resolved_by, {"resolved": 0, "scores": []})
            entry["resolved"] += 1
            if e.csat_score is not None:
                entry["scores"].append(e.csat_score)
    return {
        "days": days, "opened": len(rows), "resolved": sum(e.status == "resolved" for e in rows),
        "open": sum(e.status in OPEN_STATUSES for e in rows),
        "sla_met_pct": round(100 * len(met) / len(answered)) if answered else None,
        "median_first_response_min": round(waits[len(waits) // 2]) if waits else None,
        "csat_asked": sum(e.csat_asked_at is not None for e in rows), "csat_answered": len(rated),
        "csat_average": round(sum(e.csat_score or 0 for e in rated) / len(rated), 2) if rated else None,
        "csat_distribution": {n: sum(e.csat_score == n for e in rated) for n in range(1, 6)},
        "agents": [{"agent": name, "resolved": v["resolved"], "csat_answered": len(v["scores"]),
                    "csat_average": round(sum(v["scores"]) / len(v["scores"]), 2) if v["scores"] else None}
                   for name, v in sorted(by_agent.items())],
    }
