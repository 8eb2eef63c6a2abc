"""The outcome report: what Doorstep changed, per KPI, treatment against holdout, with 95 % intervals.

Periods are fixed calendar weeks (Monday 00:00 UTC), and the comparison pools every week that ended at
least `outcomes.maturity` ago (deliveries, returns and complaints take time to happen): a reader can
neither pick a flattering window nor count orders whose outcome is not known yet. `since` only moves
the first week (back to its Monday). The same dictionary feeds `doorstep report --json`,
`GET /api/reports/outcomes`, the dashboard and the Prometheus gauges.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.holdout import GROUPS, HOLDOUT, TREATMENT
from bot.core.shopconfig import parse_duration
from bot.reports import kpis, stats

WEEK = timedelta(days=7)
DEFAULT_WEEKS = 12  # without `since` and without any experiment yet


@dataclass(frozen=True)
class KPI:
    key: str
    label: str
    kind: str  # proportion | mean
    better: str | None  # lower | higher | None (neither is better in itself)
    unit: str
    scale: float = 1.0
    numerator: str = ""  # proportions: counts of kpis.RATES
    denominator: str = ""
    histogram: str = ""  # means: one of kpis.COUNTS


KPIS: tuple[KPI, ...] = (
    KPI("wismo_per_1000", "WISMO contacts per 1,000 orders", "mean", "lower", "per 1,000 orders", 1000,
        histogram="wismo_contacts"),
    KPI("cod_confirmation_rate", "COD orders confirmed", "proportion", "higher", "% of COD orders", 100,
        "cod_confirmed", "cod"),
    KPI("cod_rto_rate", "COD orders returned (RTO)", "proportion", "lower", "% of COD orders", 100,
        "cod_returned", "cod"),
    KPI("failed_attempts_per_1000", "Failed delivery attempts per 1,000 orders", "mean", "lower",
        "per 1,000 orders", 1000, histogram="failed_attempts"),
    KPI("failed_recovery_rate", "Delivered after a failed attempt", "proportion", "higher",
        "% of orders with a failed attempt", 100, "recovered", "failed"),
    KPI("cancellation_rate", "Cancelled orders", "proportion", None, "% of orders", 100, "cancelled", "orders"),
    KPI("messages_per_order", "Messages sent per order", "mean", None, "messages", 1, histogram="messages"),
    KPI("cost_per_order", "Estimated messaging cost per order", "mean", None, "per order", 1, histogram="cost"),
    KPI("containment_rate", "Contacts resolved without a person", "proportion", "higher",
        "% of orders with a contact", 100, "contained", "contacted"),
    KPI("false_resolution_rate", "Back about the same problem within 7 days", "proportion", "lower",
        "% of orders with a contact", 100, "falsely_resolved", "contacted"),
)
ESCALATION_KPI = KPI("escalation_first_reply_minutes", "Escalation: minutes to the first human reply", "mean",
                     "lower", "minutes")


def week_start(day: date) -> datetime:
    monday = day - timedelta(days=day.weekday())
    return datetime.combine(monday, time(0), tzinfo=UTC)


def _first_week(session: Session, since: date | None, now: datetime) -> datetime:
    if since is not None:
        return week_start(since)
    first = session.execute(sa.select(sa.func.min(kpis.ORDERS.c.created_at))
                            .where(kpis.ORDERS.c.holdout_group.is_not(None))).scalar_one()
    if isinstance(first, str):  # SQLite hands back text for an aggregate of a timestamp column
        first = datetime.fromisoformat(first)
    return week_start(first.date()) if first is not None else week_start((now - DEFAULT_WEEKS * WEEK).date())


def _verdict(kpi: KPI, comparison: stats.Comparison, *, minimum_effect: float) -> str:
    if comparison.difference is None:
        return "no data"
    if comparison.significant:
        if kpi.better is None:
            return "higher with Doorstep" if comparison.difference > 0 else "lower with Doorstep"
        improved = (comparison.difference < 0) == (kpi.better == "lower")
        return "better with Doorstep" if improved else "worse with Doorstep"
    if not comparison.enough:
        return "too little data"
    return f"no difference of {round(minimum_effect * 100)} % or more seen"


def _compare(kpi: KPI, cells: dict[str, kpis.ArmWeek], *, minimum_effect: float, ratio: float | None) -> stats.Comparison:
    t, h = cells[TREATMENT], cells[HOLDOUT]
    if kpi.kind == "proportion":
        return stats.compare_proportions(t.rates[kpi.numerator], t.rates[kpi.denominator], h.rates[kpi.numerator],
                                         h.rates[kpi.denominator], minimum_effect=minimum_effect, ratio=ratio,
                                         scale=kpi.scale)
    return stats.compare_means(t.histograms[kpi.histogram], h.histograms[kpi.histogram],
                               minimum_effect=minimum_effect, ratio=ratio, scale=kpi.scale)


def _pool(counts: kpis.Counts, weeks: list[int]) -> dict[str, kpis.ArmWeek]:
    pooled = {arm: kpis.ArmWeek() for arm in GROUPS}
    for (arm, week), cell in counts.cells.items():
        if arm not in pooled or week not in weeks:
            continue
        for key, count in cell.rates.items():
            pooled[arm].rates[key] += count
        for key, histogram in cell.histograms.items():
            for value, orders in histogram.items():
                pooled[arm].histograms[key][value] = pooled[arm].histograms[key].get(value, 0) + orders
    return pooled


def _point(kpi: KPI, cell: kpis.ArmWeek) -> float | None:
    if kpi.kind == "proportion":
        total = cell.rates[kpi.denominator]
        return cell.rates[kpi.numerator] / total * kpi.scale if total else None
    histogram = cell.histograms[kpi.histogram]
    orders = sum(histogram.values())
    return sum(v * n for v, n in histogram.items()) / orders * kpi.scale if orders else None


def _experiment(counts: kpis.Counts, *, mature: list[int], weeks: list[datetime], kpi_list: tuple[KPI, ...],
                minimum_effect: float, journey: str | None) -> dict[str, Any]:
    pooled = _pool(counts, mature)
    n_t, n_h = pooled[TREATMENT].rates["orders"], pooled[HOLDOUT].rates["orders"]
    ratio = n_h / n_t if n_t and n_h else None
    compared = [(kpi, _compare(kpi, pooled, minimum_effect=minimum_effect, ratio=ratio)) for kpi in kpi_list]
    minutes = {arm: [s / 60 for s in counts.escalation_seconds[arm]] for arm in GROUPS}
    escalation = stats.compare_means(Counter(minutes[TREATMENT]), Counter(minutes[HOLDOUT]),
                                     minimum_effect=minimum_effect, ratio=ratio)
    compared.append((ESCALATION_KPI, escalation))
    stats.holm([c for _, c in compared])
    weekly = []
    for index, start in enumerate(weeks[:-1]):
        cells = {arm: counts.cells.get((arm, index), kpis.ArmWeek()) for arm in GROUPS}
        weekly.append({
            "week_start": start.date().isoformat(), "mature": index in mature,
            "orders": {arm: cells[arm].rates["orders"] for arm in GROUPS},
            "kpis": {kpi.key: {arm: _point(kpi, cells[arm]) for arm in GROUPS} for kpi in kpi_list},
        })
    return {
        "journey": journey,
        "orders": {TREATMENT: n_t, HOLDOUT: n_h},
        "kpis": [{"key": kpi.key, "label": kpi.label, "unit": kpi.unit, "better": kpi.better,
                  **comparison.as_dict(), "verdict": _verdict(kpi, comparison, minimum_effect=minimum_effect)}
                 for kpi, comparison in compared],
        "escalations": {arm: {"answered": len(minutes[arm]), "unanswered": counts.escalations_unanswered[arm],
                              "median_minutes": stats.quantile(minutes[arm], 0.5),
                              "p90_minutes": stats.quantile(minutes[arm], 0.9)} for arm in GROUPS},
        "weekly": weekly,
    }


def build_report(session: Session, *, config: dict[str, Any], now: datetime, since: date | None = None) -> dict[str, Any]:
    """The whole report as plain JSON-ready data (a read-only transaction's worth of aggregate queries)."""
    section = config.get("outcomes", {})
    minimum_effect = float(section.get("minimum_effect", 0.2))
    maturity = parse_duration(section.get("maturity", "14d"))
    # One price table: the send planner's (`messaging.pricing`), whose price each message records.
    pricing: dict[str, Any] = (config.get("messaging") or {}).get("pricing") or {}
    kpis.prepare(session)
    first = _first_week(session, since, now)
    # A later first week is allowed, but said: leaving out weeks of a running experiment is period picking.
    experiment_start = _first_week(session, None, now) if since is not None else first
    weeks_left_out = max(0, (first - experiment_start).days // 7)
    weeks = [first]
    while weeks[-1] <= now or len(weeks) < 2:  # at least one week, even when `since` is ahead
        weeks.append(weeks[-1] + WEEK)
    mature = [i for i, start in enumerate(weeks[:-1]) if start + WEEK <= now - maturity]
    kpi_list = tuple(k for k in KPIS if k.key != "cost_per_order" or kpis.priced(pricing))

    experiments = [_experiment(kpis.count(session, boundaries=weeks, journey=None, pricing=pricing), mature=mature,
                               weeks=weeks, kpi_list=kpi_list, minimum_effect=minimum_effect, journey=None)]
    for journey in kpis.experiments(session, weeks[0], weeks[-1]):
        experiments.append(_experiment(kpis.count(session, boundaries=weeks, journey=journey, pricing=pricing),
                                       mature=mature, weeks=weeks, kpi_list=kpi_list, minimum_effect=minimum_effect,
                                       journey=journey))
    replies = kpis.reply_counts(session, since=weeks[0], until=weeks[-1])
    return {
        "generated_at": now.isoformat(),
        "since": weeks[0].date().isoformat(),
        "until": weeks[-1].date().isoformat(),
        "compared_weeks": [weeks[i].date().isoformat() for i in mature],
        "weeks_left_out": weeks_left_out,
        "maturity_days": maturity.days,
        "minimum_effect": minimum_effect,
        "confidence": 1 - stats.ALPHA,
        "currency": str(pricing.get("currency", "USD")),
        "orders_outside_experiments": kpis.orders_outside(session, weeks[0], weeks[-1]),
        "experiments": experiments,
        "reply_rates": {"by_channel": _reply_rates(replies, "channel"), "by_journey": _reply_rates(replies, "journey")},
    }


def _reply_rates(rows: list[kpis.ReplyCount], by: str) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        key = getattr(row, by)
        sent, replied = totals.setdefault(key, [0, 0])
        totals[key] = [sent + row.sent, replied + row.replied]
    out = []
    for key, (sent, replied) in sorted(totals.items()):
        low, high = stats.wilson(replied, sent)
        out.append({by: key, "sent": sent, "replied": replied, "rate": replied / sent if sent else None,
                    "ci_low": low, "ci_high": high})
    return out


# ---------------------------------------------------------------- words for people (terminal and dashboard)


def format_value(row: dict[str, Any], value: float | None, *, currency: str = "", difference: bool = False) -> str:
    """One KPI number in its unit: "12.3 %", "+4.1 pp", "189", "0.0042 USD", "35 min"."""
    if value is None:
        return "–"
    sign = "+" if difference else ""
    unit = str(row.get("unit", ""))
    if unit.startswith("%"):
        return f"{value:{sign}.1f} {'pp' if difference else '%'}"
    if unit.startswith("per 1,000"):
        return f"{value:{sign}.0f}"
    if row.get("key") == "cost_per_order":
        return f"{value:{sign}.4f} {currency}".strip()
    if unit == "minutes":
        return f"{value:{sign}.0f} min"
    return f"{value:{sign}.2f}"


def describe_interval(row: dict[str, Any], *, currency: str = "") -> str:
    """"-120 [-180, -60]", or what is missing."""
    if row.get("difference") is None:
        return "no data in one of the groups"
    text = format_value(row, row["difference"], currency=currency, difference=True)
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
        text += (f" [{format_value(row, row['ci_low'], currency=currency, difference=True)}, "
                 f"{format_value(row, row['ci_high'], currency=currency, difference=True)}]")
    return text


def describe_sample(row: dict[str, Any]) -> str:
    """"needs 700 / 80 orders (has 350 / 40)" when the comparison cannot yet see the minimum effect."""
    if row.get("enough"):
        return ""
    if row.get("needed_treatment") is None:
        return "cannot size yet (no events or no variation)"
    return (f"needs {row['needed_treatment']:,} / {row['needed_holdout']:,} (has {row['n_treatment']:,} / "
            f"{row['n_holdout']:,})")
