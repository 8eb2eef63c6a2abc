"""The shop's KPIs per holdout arm and week, counted by the database (SQLite and PostgreSQL alike).

Every query groups in SQL and returns a few rows per arm and week: sums for rates, and for the
per-order counts (WISMO contacts, failed attempts, messages, cost) a histogram `value -> orders`,
which is all a confidence interval of a mean needs. Only the escalation reply times come back one
number per answered escalation (they are few).

The unit is the order, grouped by the arm it was assigned when created (bot.core.holdout) and by the
week it was created in. A customer's inbound message is counted on the order it names, else on their
latest order created before it. This module only reads.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.core.holdout import HOLDOUT, TREATMENT, decode_journeys, journey_pattern
from bot.core.models import Escalation, Message, Order, OrderEvent
from bot.core.vocab import template_key

ORDERS = Order.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]
EVENTS = OrderEvent.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]

# A customer writing about one of these is a contact the bot has to resolve (greetings and thanks are not).
PROBLEM_INTENTS = ("wismo", "reschedule", "change_address", "cod_confirm", "cancel_order", "return_refund", "human")
BILLED = ("sent", "delivered", "read")  # outbound messages a provider accepted (and charges for)
REPLY_WINDOW_SECONDS = 24 * 3600  # a proactive message counts as replied when the customer wrote within this
RETURN_AFTER_SECONDS = 12 * 3600  # the same problem again after this much quiet is a new contact ...
RETURN_WITHIN_SECONDS = 7 * 24 * 3600  # ... and within this, a false resolution of the earlier one
# Escalations the journeys open themselves (call a COD customer who did not answer): agents' tasks, not a
# conversation the bot failed to resolve, so they do not count against containment.
PROACTIVE_ESCALATIONS = ("needs_call",)
JOURNEY_OF_TEMPLATE = {template_key("order_confirmed", cod=True): "order_confirmed"}

# The per-order counts whose means the report compares (histograms), and the rates (sums).
COUNTS = ("wismo_contacts", "failed_attempts", "messages", "cost")
RATES = ("orders", "cod", "cod_confirmed", "cod_returned", "failed", "recovered", "cancelled", "contacted",
         "contained", "falsely_resolved")


@dataclass
class ArmWeek:
    """One arm's numbers in one week."""

    rates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RATES, 0))
    histograms: dict[str, dict[float, int]] = field(default_factory=lambda: {k: {} for k in COUNTS})


@dataclass
class Counts:
    """Everything the statistics need, keyed (arm, week index)."""

    cells: dict[tuple[str, int], ArmWeek] = field(default_factory=lambda: defaultdict(ArmWeek))
    escalation_seconds: dict[str, list[float]] = field(default_factory=lambda: {TREATMENT: [], HOLDOUT: []})
    escalations_unanswered: dict[str, int] = field(default_factory=lambda: {TREATMENT: 0, HOLDOUT: 0})


# ---------------------------------------------------------------- expressions


def seconds_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """`later - earlier` in seconds (SQLite keeps timestamps as text; julianday reads it)."""
    if dialect == "sqlite":
        return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0
    return sa.extract("epoch", later - earlier)


def week_index(created: Any, boundaries: list[datetime]) -> ColumnElement[Any]:
    """0 for an order created in the first week, 1 in the second, …: fixed weekly periods."""
    whens = [(created < end, index) for index, end in enumerate(boundaries[1:])]
    return sa.case(*whens, else_=None)


def arm_of(journey: str | None) -> tuple[ColumnElement[Any], list[ColumnElement[Any]]]:
    """The arm column and the filter of one experiment: the global holdout, or one journey's (among the
    global treatment: a global holdout gets no journey at all)."""
    if journey is None:
        return ORDERS.c.holdout_group, [ORDERS.c.holdout_group.is_not(None)]
    held, treated = ORDERS.c.holdout_journeys.like(journey_pattern(journey, HOLDOUT)), \
        ORDERS.c.holdout_journeys.like(journey_pattern(journey, TREATMENT))
    return (sa.case((held, HOLDOUT), (treated, TREATMENT), else_=None),
            [ORDERS.c.holdout_group == TREATMENT, sa.or_(held, treated)])


def attributed_order(message_table: Any, at: Any) -> ColumnElement[Any]:
    """The order a customer's message or escalation is about: the one it names, else their latest before it."""
    latest = sa.select(ORDERS.c.id).where(ORDERS.c.customer_id == message_table.c.customer_id,
                                          ORDERS.c.created_at <= at) \
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id.desc()).limit(1).scalar_subquery()
    return sa.func.coalesce(message_table.c.order_pk, latest)


def price_of(channel: Any, country: Any, prices: dict[str, dict[str, float]]) -> ColumnElement[Any]:
    """The shop's price of one outbound message (doorstep.yaml `outcomes.prices`); 0 when not priced."""
    whens: list[tuple[ColumnElement[bool], float]] = []
    for ch, table in sorted(prices.items()):
        whens += [(sa.and_(channel == ch, country == cc), float(p)) for cc, p in sorted(table.items()) if cc != "default"]
    whens += [(channel == ch, float(table["default"])) for ch, table in sorted(prices.items()) if "default" in table]
    return sa.case(*whens, else_=0.0) if whens else sa.literal(0.0)


# ---------------------------------------------------------------- the queries


def experiments(session: Session, since: datetime, until: datetime) -> list[str]:
    """The journeys measured on their own among the orders of the window (from the stored arms)."""
    rows = session.execute(sa.select(ORDERS.c.holdout_journeys).distinct()
                           .where(ORDERS.c.created_at >= since, ORDERS.c.created_at < until,
                                  ORDERS.c.holdout_journeys != "")).scalars()
    return sorted({name for stored in rows for name in decode_journeys(stored)})


def orders_outside(session: Session, since: datetime, until: datetime) -> int:
    """Orders of the window created while no experiment ran (left out of every comparison)."""
    return int(session.execute(sa.select(sa.func.count()).where(
        ORDERS.c.created_at >= since, ORDERS.c.created_at < until, ORDERS.c.holdout_group.is_(None))).scalar_one())


def count(session: Session, *, boundaries: list[datetime], journey: str | None,
          prices: dict[str, dict[str, float]]) -> Counts:
    """Every KPI's numbers for one experiment, per arm and week (a few aggregate queries)."""
    dialect = session.get_bind().dialect.name
    arm, filters = arm_of(journey)
    cohort = sa.select(
        ORDERS.c.id.label("order_pk"), arm.label("arm"), week_index(ORDERS.c.created_at, boundaries).label("week"),
        ORDERS.c.payment_method, ORDERS.c.status, ORDERS.c.cod_status, ORDERS.c.delivered_at,
        ORDERS.c.shipping_address["country"].as_string().label("country"),
    ).where(ORDERS.c.created_at >= boundaries[0], ORDERS.c.created_at < boundaries[-1], *filters).cte("cohort")

    inbound = sa.select(
        MESSAGES.c.id, MESSAGES.c.customer_id, MESSAGES.c.intent, MESSAGES.c.created_at,
        attributed_order(MESSAGES, MESSAGES.c.created_at).label("order_pk"),
    ).where(MESSAGES.c.direction == "in", MESSAGES.c.customer_id.is_not(None)).cte("inbound")
    wismo = sa.select(inbound.c.order_pk, sa.func.count(sa.distinct(sa.func.date(inbound.c.created_at))).label("n")) \
        .where(inbound.c.intent == "wismo").group_by(inbound.c.order_pk).subquery("wismo")
    contacts = sa.select(inbound.c.order_pk, sa.func.count().label("n")) \
        .where(inbound.c.intent.in_(PROBLEM_INTENTS)).group_by(inbound.c.order_pk).subquery("contacts")

    # A customer back about the same problem 12 h – 7 d after an earlier message, no person involved between.
    ordered = sa.select(
        inbound.c.order_pk, inbound.c.customer_id, inbound.c.created_at,
        sa.func.lag(inbound.c.created_at).over(partition_by=(inbound.c.customer_id, inbound.c.intent),
                                               order_by=(inbound.c.created_at, inbound.c.id)).label("previous_at"),
    ).where(inbound.c.intent.in_(PROBLEM_INTENTS)).subquery("ordered")
    gap = seconds_between(ordered.c.created_at, ordered.c.previous_at, dialect)
    person_between = sa.exists().where(ESCALATIONS.c.customer_id == ordered.c.customer_id,
                                       ESCALATIONS.c.created_at >= ordered.c.previous_at,
                                       ESCALATIONS.c.created_at <= ordered.c.created_at)
    returns = sa.select(ordered.c.order_pk, sa.func.count().label("n")).where(
        ordered.c.previous_at.is_not(None), gap > RETURN_AFTER_SECONDS, gap <= RETURN_WITHIN_SECONDS, ~person_between,
    ).group_by(ordered.c.order_pk).subquery("returns")

    failed = sa.select(EVENTS.c.order_pk, sa.func.count().label("n")).where(EVENTS.c.type == "failed_attempt") \
        .group_by(EVENTS.c.order_pk).subquery("failed")
    escalated = sa.select(attributed_order(ESCALATIONS, ESCALATIONS.c.created_at).label("order_pk"),
                          ESCALATIONS.c.reason, ESCALATIONS.c.created_at, ESCALATIONS.c.first_response_at) \
        .cte("escalated")
    escalations = sa.select(escalated.c.order_pk, sa.func.count().label("n")) \
        .where(escalated.c.reason.not_in(PROACTIVE_ESCALATIONS)).group_by(escalated.c.order_pk).subquery("escalations")
    billed = sa.select(attributed_order(MESSAGES, MESSAGES.c.created_at).label("order_pk"), MESSAGES.c.channel) \
        .where(MESSAGES.c.direction == "out", MESSAGES.c.status.in_(BILLED)).subquery("billed")
    sent = sa.select(billed.c.order_pk, sa.func.count().label("n"),
                     sa.func.sum(price_of(billed.c.channel, cohort.c.country, prices)).label("cost")) \
        .join(cohort, cohort.c.order_pk == billed.c.order_pk).group_by(billed.c.order_pk).subquery("sent")

    def zero(column: Any) -> ColumnElement[Any]:
        return sa.func.coalesce(column, 0)

    facts = sa.select(
        cohort.c.arm, cohort.c.week, cohort.c.payment_method, cohort.c.status, cohort.c.cod_status,
        cohort.c.delivered_at,
        zero(wismo.c.n).label("wismo_contacts"), zero(failed.c.n).label("failed_attempts"),
        zero(sent.c.n).label("messages"), sa.func.round(sa.cast(zero(sent.c.cost), sa.Numeric(16, 6)), 4).label("cost"),
        zero(contacts.c.n).label("contacts"), zero(escalations.c.n).label("escalations"),
        zero(returns.c.n).label("returns"),
    ).select_from(cohort) \
        .outerjoin(wismo, wismo.c.order_pk == cohort.c.order_pk) \
        .outerjoin(failed, failed.c.order_pk == cohort.c.order_pk) \
        .outerjoin(sent, sent.c.order_pk == cohort.c.order_pk) \
        .outerjoin(contacts, contacts.c.order_pk == cohort.c.order_pk) \
        .outerjoin(escalations, escalations.c.order_pk == cohort.c.order_pk) \
        .outerjoin(returns, returns.c.order_pk == cohort.c.order_pk) \
        .where(cohort.c.week.is_not(None)).cte("facts")

    def flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    cod = facts.c.payment_method == "cod"
    had_failed = facts.c.failed_attempts > 0
    contacted = facts.c.contacts > 0
    result = Counts()
    rate_rows = session.execute(sa.select(
        facts.c.arm, facts.c.week, sa.func.count(),
        flag(cod), flag(sa.and_(cod, facts.c.cod_status == "confirmed")), flag(sa.and_(cod, facts.c.status == "returned")),
        flag(had_failed), flag(sa.and_(had_failed, facts.c.delivered_at.is_not(None))),
        flag(facts.c.status == "cancelled"),
        flag(contacted), flag(sa.and_(contacted, facts.c.escalations == 0)), flag(sa.and_(contacted, facts.c.returns > 0)),
    ).group_by(facts.c.arm, facts.c.week))
    for arm_name, week, *numbers in rate_rows:
        result.cells[(str(arm_name), int(week))].rates = {k: int(v or 0) for k, v in zip(RATES, numbers, strict=True)}
    for name in COUNTS:
        value = facts.c[name]
        for arm_name, week, number, orders in session.execute(
                sa.select(facts.c.arm, facts.c.week, value, sa.func.count()).group_by(facts.c.arm, facts.c.week, value)):
            result.cells[(str(arm_name), int(week))].histograms[name][float(number)] = int(orders)

    reply_seconds = seconds_between(escalated.c.first_response_at, escalated.c.created_at, dialect)
    for arm_name, seconds in session.execute(
            sa.select(cohort.c.arm, reply_seconds).join(cohort, cohort.c.order_pk == escalated.c.order_pk)
            .where(cohort.c.week.is_not(None))):
        if seconds is None:
            result.escalations_unanswered[str(arm_name)] += 1
        else:
            result.escalation_seconds[str(arm_name)].append(max(0.0, float(seconds)))
    return result


@dataclass(frozen=True)
class ReplyCount:
    channel: str
    journey: str
    sent: int
    replied: int


def reply_counts(session: Session, *, since: datetime, until: datetime) -> list[ReplyCount]:
    """Proactive messages that went out about the window's orders, and how many the customer answered
    within a day, per channel and journey (one grouped query)."""
    dialect = session.get_bind().dialect.name
    proactive = MESSAGES.alias("proactive")
    reply = MESSAGES.alias("reply")
    answered = sa.exists().where(
        reply.c.direction == "in", reply.c.customer_id == proactive.c.customer_id,
        reply.c.created_at >= proactive.c.sent_at,
        seconds_between(reply.c.created_at, proactive.c.sent_at, dialect) <= REPLY_WINDOW_SECONDS,
    )
    rows = session.execute(
        sa.select(proactive.c.channel, proactive.c.template, sa.func.count(),
                  sa.func.sum(sa.case((answered, 1), else_=0)))
        .join(ORDERS, ORDERS.c.id == proactive.c.order_pk)
        .where(proactive.c.direction == "out", proactive.c.template.like("journey.%"),
               proactive.c.sent_at.is_not(None), ORDERS.c.created_at >= since, ORDERS.c.created_at < until)
        .group_by(proactive.c.channel, proactive.c.template))
    return [ReplyCount(str(channel), JOURNEY_OF_TEMPLATE.get(str(template), str(template).removeprefix("journey.")),
                       int(n), int(replied or 0))
            for channel, template, n, replied in rows]
