"""The shop's KPIs per holdout arm and week, counted by the database (SQLite and PostgreSQL alike).

Per experiment, one query: every order of the window and everything that happened to it (WISMO days,
failed attempts, billed messages, problem contacts, escalations, comebacks) as one UNION ALL of small
rows, summed per order, then counted per combination of values. What comes back is a few hundred rows
per arm and week at most: the sums behind the rates, and for the per-order counts (WISMO contacts,
failed attempts, messages, cost) a histogram `value -> orders`, which is all a confidence interval of
a mean needs. Only the escalation reply times come back one number per answered escalation (few).

The unit is the order, grouped by the arm it was assigned when created (bot.core.holdout) and by the
week it was created in. A customer's message or escalation is counted on the order it names, else on
their latest order created before it. This module only reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.core import planner
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
PLANNED_CHANNELS = ("sms", "whatsapp", "email", "viber")  # the channels `messaging.pricing` can put a price on
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
    earlier = ORDERS.alias("earlier")  # an alias: a query that also reads `orders` must not correlate to it
    latest = sa.select(earlier.c.id).where(earlier.c.customer_id == message_table.c.customer_id,
                                           earlier.c.created_at <= at) \
        .order_by(earlier.c.created_at.desc(), earlier.c.id.desc()).limit(1).scalar_subquery()
    return sa.func.coalesce(message_table.c.order_pk, latest)


def recorded_price(messages: Any) -> ColumnElement[Any]:
    """The price the send planner recorded for a message (`Message.plan`), NULL when it has no plan or was sent
    on another channel than planned (a price for a channel it did not go on is not its price)."""
    plan = messages.c.plan
    return sa.case((plan["channel"].as_string() == messages.c.channel, plan["price"].as_float()), else_=None)


def fallback_price(channel: str, country: Any, pricing: Mapping[str, Any]) -> ColumnElement[Any]:
    """The planner's price (`bot.core.planner.price`, doorstep.yaml `messaging.pricing`) of a message without a
    recorded plan, by the order's country: a plain message (no WhatsApp template), utility."""
    countries = _countries(pricing)
    default = planner.price(pricing, channel, "session", planner.UTILITY, None)
    whens = [(country == code, value) for code in countries
             if (value := planner.price(pricing, channel, "session", planner.UTILITY, code)) != default]
    return sa.case(*whens, else_=default) if whens else sa.literal(default)


def unplanned_channels(pricing: Mapping[str, Any]) -> list[str]:
    """The channels where a message without a recorded plan may cost something (Telegram never does)."""
    countries = [None, *_countries(pricing)]
    return [channel for channel in PLANNED_CHANNELS
            if any(planner.price(pricing, channel, "session", planner.UTILITY, code) > 0 for code in countries)]


def _countries(pricing: Mapping[str, Any]) -> list[str]:
    """The countries the price table names (its `*` rows price every other one)."""
    return sorted({str(code) for table in (pricing.get("sms"), pricing.get("whatsapp"))
                   if isinstance(table, Mapping) for code in table if code != "*"})


def priced(pricing: Any) -> bool:
    """Whether the price table prices anything (all zero: no cost KPI)."""
    if isinstance(pricing, Mapping):
        return any(priced(value) for key, value in pricing.items() if key != "currency")
    return not isinstance(pricing, bool) and isinstance(pricing, int | float) and pricing > 0


# ---------------------------------------------------------------- the queries


def prepare(session: Session) -> None:
    """Per report transaction: on PostgreSQL, no JIT. The planner prices the correlated attribution subquery
    high enough to JIT-compile the KPI query, which took 1.7 s of its 2.2 s at 100,000 orders."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL jit = off"))


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


# The per-order columns of the stream (`count`): flags of the order itself, then what happened to it.
_FLAGS = ("cod", "cod_confirmed", "cod_returned", "cancelled", "delivered")
_SUMS = ("wismo_contacts", "failed_attempts", "messages", "contacts", "escalations", "returns")


def count(session: Session, *, boundaries: list[datetime], journey: str | None,
          pricing: Mapping[str, Any]) -> Counts:
    """Every KPI's numbers for one experiment, per arm and week.

    One UNION ALL of small rows (the order itself, each WISMO day, failed attempt, billed message with
    its recorded price, problem contact, escalation and comeback), summed per order with one GROUP BY and
    then counted per combination of values with another: no join of derived tables, which SQLite
    would run as nested scans. One more small query for the escalation reply times."""
    dialect = session.get_bind().dialect.name
    arm, filters = arm_of(journey)
    channels = unplanned_channels(pricing)
    since = boundaries[0]  # nothing about an order of the window happened before it was created
    columns = ("order_pk", "arm", "week", "country", *_FLAGS, *_SUMS, "recorded_cost",
               *(f"unplanned_{c}" for c in channels))

    def row(order_pk: Any, **values: Any) -> Any:
        """One stream row: the given columns, NULL/0 for the rest (typed, so UNION ALL agrees everywhere)."""
        out = []
        for name in columns:
            if name in values:
                out.append(values[name].label(name) if hasattr(values[name], "label") else sa.literal(values[name]).label(name))
            elif name == "order_pk":
                out.append(order_pk.label(name))
            elif name in ("arm", "country"):
                out.append(sa.cast(sa.null(), sa.String()).label(name))
            elif name == "week":
                out.append(sa.cast(sa.null(), sa.Integer()).label(name))
            elif name == "recorded_cost":
                out.append(sa.literal(0.0, sa.Float()).label(name))
            else:
                out.append(sa.literal(0, sa.Integer()).label(name))
        return out

    def flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return sa.case((condition, 1), else_=0)

    cod = ORDERS.c.payment_method == "cod"
    orders = sa.select(*row(
        ORDERS.c.id, arm=arm, week=week_index(ORDERS.c.created_at, boundaries),
        country=ORDERS.c.shipping_address["country"].as_string(), cod=flag(cod),
        cod_confirmed=flag(sa.and_(cod, ORDERS.c.cod_status == "confirmed")),
        cod_returned=flag(sa.and_(cod, ORDERS.c.status == "returned")),
        cancelled=flag(ORDERS.c.status == "cancelled"), delivered=flag(ORDERS.c.delivered_at.is_not(None)),
    )).where(ORDERS.c.created_at >= boundaries[0], ORDERS.c.created_at < boundaries[-1], *filters)

    inbound = sa.select(
        MESSAGES.c.id, MESSAGES.c.customer_id, MESSAGES.c.intent, MESSAGES.c.created_at,
        attributed_order(MESSAGES, MESSAGES.c.created_at).label("order_pk"),
    ).where(MESSAGES.c.direction == "in", MESSAGES.c.customer_id.is_not(None),
            MESSAGES.c.intent.in_(PROBLEM_INTENTS), MESSAGES.c.created_at >= since).cte("inbound")
    wismo_days = sa.select(inbound.c.order_pk).where(inbound.c.intent == "wismo") \
        .group_by(inbound.c.order_pk, sa.func.date(inbound.c.created_at)).subquery("wismo_days")
    # A customer back about the same problem with the same order 12 h – 7 d after an earlier message, no person
    # involved between.
    ordered = sa.select(
        inbound.c.order_pk, inbound.c.customer_id, inbound.c.created_at,
        sa.func.lag(inbound.c.created_at).over(partition_by=(inbound.c.order_pk, inbound.c.intent),
                                               order_by=(inbound.c.created_at, inbound.c.id)).label("previous_at"),
    ).subquery("ordered")
    gap = seconds_between(ordered.c.created_at, ordered.c.previous_at, dialect)
    person_between = sa.exists().where(ESCALATIONS.c.customer_id == ordered.c.customer_id,
                                       ESCALATIONS.c.created_at >= ordered.c.previous_at,
                                       ESCALATIONS.c.created_at <= ordered.c.created_at)
    billed = sa.select(attributed_order(MESSAGES, MESSAGES.c.created_at).label("order_pk"), MESSAGES.c.channel,
                       recorded_price(MESSAGES).label("price")) \
        .where(MESSAGES.c.direction == "out", MESSAGES.c.status.in_(BILLED), MESSAGES.c.created_at >= since) \
        .subquery("billed")
    stream = sa.union_all(
        orders,
        sa.select(*row(wismo_days.c.order_pk, wismo_contacts=1)),
        sa.select(*row(EVENTS.c.order_pk, failed_attempts=1)).where(EVENTS.c.type == "failed_attempt",
                                                                  EVENTS.c.created_at >= since),
        sa.select(*row(billed.c.order_pk, messages=1,
                       recorded_cost=sa.cast(sa.func.coalesce(billed.c.price, 0.0), sa.Float()),
                       **{f"unplanned_{c}": flag(sa.and_(billed.c.price.is_(None), billed.c.channel == c))
                          for c in channels})),
        sa.select(*row(inbound.c.order_pk, contacts=1)),
        sa.select(*row(attributed_order(ESCALATIONS, ESCALATIONS.c.created_at), escalations=1))
        .where(ESCALATIONS.c.reason.not_in(PROACTIVE_ESCALATIONS), ESCALATIONS.c.created_at >= since),
        sa.select(*row(ordered.c.order_pk, returns=1)).where(
            ordered.c.previous_at.is_not(None), gap > RETURN_AFTER_SECONDS, gap <= RETURN_WITHIN_SECONDS,
            ~person_between),
    ).subquery("stream")
    per_order = sa.select(
        sa.func.max(stream.c.arm).label("arm"), sa.func.max(stream.c.week).label("week"),
        sa.func.max(stream.c.country).label("country"),
        *(sa.func.max(stream.c[name]).label(name) for name in _FLAGS),
        *(sa.func.sum(stream.c[name]).label(name) for name in _SUMS),
        sa.func.sum(stream.c.recorded_cost).label("recorded_cost"),
        *(sa.func.sum(stream.c[f"unplanned_{c}"]).label(f"unplanned_{c}") for c in channels),
    ).group_by(stream.c.order_pk).subquery("per_order")
    # What each order's messages cost: the prices the send planner recorded when it queued them, and for a
    # message without one (queued before the planner recorded prices) the planner's price today.
    cost: ColumnElement[Any] = sa.func.coalesce(per_order.c.recorded_cost, 0.0)
    for channel in channels:
        cost = cost + per_order.c[f"unplanned_{channel}"] * fallback_price(channel, per_order.c.country, pricing)
    keys = (per_order.c.arm, per_order.c.week, *(per_order.c[n] for n in _FLAGS),
            *(per_order.c[n] for n in _SUMS), sa.func.round(sa.cast(cost, sa.Numeric(16, 6)), 4))
    result = Counts()
    combos = session.execute(sa.select(*keys, sa.func.count()).where(per_order.c.arm.is_not(None),
                                                                     per_order.c.week.is_not(None)).group_by(*keys))
    for arm_name, week, *values, orders_count in combos:
        flags = dict(zip(_FLAGS, (int(v or 0) for v in values[:len(_FLAGS)]), strict=True))
        sums = dict(zip(_SUMS, (int(v or 0) for v in values[len(_FLAGS):-1]), strict=True))
        cell = result.cells[(str(arm_name), int(week))]
        n = int(orders_count)
        contacted = sums["contacts"] > 0
        for key, counted in (
            ("orders", True), ("cod", flags["cod"]), ("cod_confirmed", flags["cod_confirmed"]),
            ("cod_returned", flags["cod_returned"]), ("failed", sums["failed_attempts"] > 0),
            ("recovered", sums["failed_attempts"] > 0 and flags["delivered"]), ("cancelled", flags["cancelled"]),
            ("contacted", contacted), ("contained", contacted and sums["escalations"] == 0),
            ("falsely_resolved", contacted and sums["returns"] > 0),
        ):
            cell.rates[key] += n if counted else 0
        for key, value in (("wismo_contacts", sums["wismo_contacts"]), ("failed_attempts", sums["failed_attempts"]),
                           ("messages", sums["messages"]), ("cost", float(values[-1] or 0))):
            histogram = cell.histograms[key]
            histogram[float(value)] = histogram.get(float(value), 0) + n

    # Escalation reply times, one number per answered escalation (few): each attributed first, then its order
    # looked up by primary key (a join on the attribution expression made SQLite scan escalations per order).
    escalated = sa.select(
        attributed_order(ESCALATIONS, ESCALATIONS.c.created_at).label("order_pk"),
        seconds_between(ESCALATIONS.c.first_response_at, ESCALATIONS.c.created_at, dialect).label("seconds"),
    ).where(ESCALATIONS.c.created_at >= since).subquery("escalated")
    for arm_name, seconds in session.execute(
            sa.select(arm, escalated.c.seconds).select_from(escalated).join(ORDERS, ORDERS.c.id == escalated.c.order_pk)
            .where(ORDERS.c.created_at >= boundaries[0], ORDERS.c.created_at < boundaries[-1], *filters)):
        if arm_name is None:
            continue
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
