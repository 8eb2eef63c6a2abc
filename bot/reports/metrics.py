"""The outcome report as Prometheus gauges (`/metrics`), for alerting and long-term graphs.

The report is a handful of aggregate queries, too many for every scrape: it is computed at most once
per REFRESH_SECONDS and the last one served in between. Read-only, like every scrape. Labels are KPI
keys, groups and journey names: never personal data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.core.holdout import GROUPS
from bot.reports.outcomes import build_report

if TYPE_CHECKING:
    from bot.core.db import Database

log = logging.getLogger(__name__)
REFRESH_SECONDS = 300.0


class OutcomesCollector(Collector):
    """Pooled values, differences and 95 % intervals of the outcome report's compared weeks."""

    def __init__(self, db: Database, now: Callable[[], datetime], config: dict[str, Any]) -> None:
        self._db, self._now, self._config = db, now, config
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _report(self) -> dict[str, Any] | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < REFRESH_SECONDS:
                return self._cached[1]
            try:
                with self._db.read() as session:
                    report = build_report(session, config=self._config, now=self._now())
            except sa.exc.SQLAlchemyError as exc:
                log.warning("metrics: outcome report unavailable (%s)", exc.__class__.__name__)
                return None
            self._cached = (time.monotonic(), report)
            return report

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not compute a report (the registry would call collect() instead)

    def collect(self) -> Iterable[Metric]:
        report = self._report()
        if report is None:
            return []
        orders = GaugeMetricFamily("doorstep_outcome_orders", "Orders of the compared weeks per experiment and group",
                                   labels=["experiment", "group"])
        value = GaugeMetricFamily("doorstep_outcome_kpi", "A KPI's value per group over the compared weeks "
                                  "(unit in the report: %, per 1,000 orders, …)", labels=["experiment", "kpi", "group"])
        difference = GaugeMetricFamily("doorstep_outcome_difference",
                                       "Treatment minus holdout, with the bounds of its 95 % confidence interval",
                                       labels=["experiment", "kpi", "bound"])
        significant = GaugeMetricFamily("doorstep_outcome_significant",
                                        "1 if the difference stays significant after the Holm correction",
                                        labels=["experiment", "kpi"])
        for experiment in report["experiments"]:
            name = experiment["journey"] or "global"
            for group in GROUPS:
                orders.add_metric([name, group], experiment["orders"][group])
            for row in experiment["kpis"]:
                for group in GROUPS:
                    if row[group] is not None:
                        value.add_metric([name, row["key"], group], row[group])
                for bound, key in (("estimate", "difference"), ("low", "ci_low"), ("high", "ci_high")):
                    if row[key] is not None:
                        difference.add_metric([name, row["key"], bound], row[key])
                significant.add_metric([name, row["key"]], 1 if row["significant"] else 0)
        return [orders, value, difference, significant]
