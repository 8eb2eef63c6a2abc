"""Prometheus metrics (`GET /metrics`). Labels never carry personal data.

Two kinds: counters and histograms the code updates as it works (module level,
one set per process), and operator gauges (`OperationsCollector`) computed from
the database at scrape time with a few cheap read-only queries: outbox backlog,
escalations waiting, dead-lettered webhooks. Scraping must never write and never
take SQLite's write lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from bot.core.db import Database

log = logging.getLogger(__name__)

INBOUND = Counter("doorstep_inbound_messages_total", "Inbound messages handled", ["channel", "intent"])
INBOUND_DUPLICATES = Counter("doorstep_inbound_duplicates_total", "Inbound provider retries dropped", ["channel"])
OUTBOUND = Counter("doorstep_outbound_total", "Outbox deliveries by result", ["kind", "channel", "result"])
ESCALATIONS = Counter("doorstep_escalations_total", "Conversations handed to a human", ["reason"])
FLOW_COMPLETIONS = Counter("doorstep_flow_turns_total", "Turns handled per flow", ["flow"])
HANDLE_SECONDS = Histogram("doorstep_inbound_handle_seconds", "Time to handle one inbound message",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ACK_BATCH_SIZE = Histogram("doorstep_ack_batch_size", "Inbound messages stored per group commit of the webhooks",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128))
ACK_LOCK_WAIT = Histogram("doorstep_ack_lock_wait_seconds",
                          "Time a group commit waited to begin its transaction (SQLite: for the write lock)",
                          buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
ACK_COMMIT_SECONDS = Histogram("doorstep_ack_commit_seconds", "Time of one group commit, waiting included",
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
LOCK_ERRORS = Counter("doorstep_database_lock_errors_total",
                      "Statements that failed on a database lock (SQLite 'database is locked', "
                      "PostgreSQL lock timeout or deadlock)", ["backend"])
LOGISTICS_WEBHOOKS = Counter("doorstep_logistics_webhook_deliveries_total",
                             "Logistics webhook tries by outcome: delivered, feed_only, retry, failed (for good), "
                             "refused (the URL guard or scheme refused LOGISTICS_WEBHOOK_URL), dead (retries used up)",
                             ["outcome"])

# PostgreSQL SQLSTATEs of lock failures: lock_not_available (lock_timeout, NOWAIT), deadlock_detected.
_PG_LOCK_STATES = frozenset({"55P03", "40P01"})
_SQLITE_LOCK_TEXTS = ("database is locked", "database table is locked")


def is_lock_error(exc: BaseException | None) -> bool:
    """A DBAPI error that says a lock could not be had (not a constraint, syntax or connection error)."""
    if exc is None:
        return False
    if getattr(exc, "sqlstate", None) in _PG_LOCK_STATES:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _SQLITE_LOCK_TEXTS)


def _count_lock_error(context: Any) -> None:
    if is_lock_error(context.original_exception):
        LOCK_ERRORS.labels(context.engine.dialect.name).inc()


def watch_lock_errors(engine: Engine) -> None:
    """Count every lock failure of this engine's statements (idempotent per engine)."""
    if not event.contains(engine, "handle_error", _count_lock_error):
        event.listen(engine, "handle_error", _count_lock_error)


# ---------------------------------------------------------------- gauges computed at scrape time

OUTBOX_WAITING = ("pending", "sending")
OPEN_ESCALATIONS = ("open", "assigned")


class OperationsCollector(Collector):
    """What an operator alerts on, read from the database when Prometheus scrapes.

    Each scrape is one read-only transaction of four aggregate queries over
    indexed columns. If the database cannot be read, `doorstep_database_up` is 0
    and the other gauges are left out (absent, not a misleading zero).
    """

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("doorstep_database_up", "1 if the database answered this scrape's queries")
        try:
            families = self._read(self._now())
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: database unavailable (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _read(self, now: datetime) -> list[Metric]:
        from bot.core.models import Escalation, Outbox

        backlog = GaugeMetricFamily("doorstep_outbox_backlog",
                                    "Outbox rows due now and not yet delivered (pending or being sent)",
                                    labels=["kind", "channel"])
        oldest = GaugeMetricFamily("doorstep_outbox_oldest_due_age_seconds",
                                   "How long the oldest due, undelivered outbox row has been waiting",
                                   labels=["kind", "channel"])
        escalations = GaugeMetricFamily("doorstep_escalations_open",
                                        "Escalations not resolved yet (open or assigned)")
        overdue = GaugeMetricFamily("doorstep_escalations_overdue",
                                    "Unresolved escalations past their SLA")
        dead = GaugeMetricFamily("doorstep_logistics_webhooks_dead_lettered",
                                 "Logistics webhook deliveries that exhausted their retries")
        outbox = Outbox.__table__  # type: ignore[attr-defined]
        escalation = Escalation.__table__  # type: ignore[attr-defined]
        with self._db.read() as session:
            rows = session.execute(
                sa.select(outbox.c.kind, outbox.c.channel, sa.func.count(), sa.func.min(outbox.c.due_at))
                .where(outbox.c.status.in_(OUTBOX_WAITING), outbox.c.due_at <= now)
                .group_by(outbox.c.kind, outbox.c.channel)
            ).all()
            open_count, overdue_count = session.execute(
                sa.select(sa.func.count(),
                          sa.func.coalesce(sa.func.sum(sa.case((escalation.c.sla_due_at < now, 1), else_=0)), 0))
                .where(escalation.c.status.in_(OPEN_ESCALATIONS))
            ).one()
            dead_count = session.execute(
                sa.select(sa.func.count()).where(outbox.c.kind == "webhook", outbox.c.status == "dead")
            ).scalar_one()
        for kind, channel, count, first_due in rows:
            labels = [str(kind), str(channel or "none")]
            backlog.add_metric(labels, int(count))
            oldest.add_metric(labels, max(0.0, (now - first_due).total_seconds()) if first_due else 0.0)
        escalations.add_metric([], int(open_count))
        overdue.add_metric([], int(overdue_count))
        dead.add_metric([], int(dead_count))
        return [backlog, oldest, escalations, overdue, dead]
