"""`/metrics` had only counters: an operator could not see a stuck outbox, escalations
past their SLA, webhooks given up on, or lock errors. These gauges are read from the
database at scrape time (read-only), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.core.models import Conversation, Customer, Escalation, KeyValue, Outbox
from bot.core.settings import Settings
from bot.service import Service

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def _seed(service: Service) -> None:
    with service.db.session() as session:
        customer = Customer(phone="+919812345678", name="Asha")
        session.add(customer)
        session.flush()
        conversation = Conversation(customer_id=customer.id or 0)
        session.add(conversation)
        session.flush()
        ids = {"customer_id": customer.id or 0, "conversation_id": conversation.id or 0}
        session.add_all([
            # due 10 minutes ago and 2 minutes ago on SMS; one due tomorrow (scheduled, not a backlog)
            Outbox(kind="message", channel="sms", status="pending", due_at=NOW - timedelta(minutes=10)),
            Outbox(kind="message", channel="sms", status="sending", due_at=NOW - timedelta(minutes=2)),
            Outbox(kind="message", channel="sms", status="pending", due_at=NOW + timedelta(days=1)),
            Outbox(kind="message", channel="whatsapp", status="sent", due_at=NOW - timedelta(hours=1)),
            Outbox(kind="webhook", status="pending", due_at=NOW - timedelta(seconds=30)),
            Outbox(kind="webhook", status="dead", due_at=NOW - timedelta(hours=3)),
            Outbox(kind="webhook", status="sent", due_at=NOW - timedelta(hours=3)),
            Escalation(reason="human", status="open", sla_due_at=NOW - timedelta(minutes=5), **ids),
            Escalation(reason="human", status="assigned", sla_due_at=NOW + timedelta(minutes=20), **ids),
            Escalation(reason="human", status="resolved", sla_due_at=NOW - timedelta(hours=1), **ids),
        ])


def test_metrics_show_backlog_escalations_and_dead_letters(settings: Settings) -> None:
    service = Service.create(settings, clock=lambda: NOW)
    _seed(service)
    with TestClient(create_app(service=service)) as client:
        samples = _samples(client)
    sms = (("channel", "sms"), ("kind", "message"))
    webhook = (("channel", "none"), ("kind", "webhook"))
    assert samples[("doorstep_outbox_backlog", sms)] == 2
    assert samples[("doorstep_outbox_oldest_due_age_seconds", sms)] == 600
    assert samples[("doorstep_outbox_backlog", webhook)] == 1
    assert samples[("doorstep_outbox_oldest_due_age_seconds", webhook)] == 30
    assert ("doorstep_outbox_backlog", (("channel", "whatsapp"), ("kind", "message"))) not in samples
    assert samples[("doorstep_escalations_open", ())] == 2
    assert samples[("doorstep_escalations_overdue", ())] == 1
    assert samples[("doorstep_logistics_webhooks_dead_lettered", ())] == 1
    assert samples[("doorstep_database_up", ())] == 1


def test_scraping_writes_nothing_and_takes_no_write_lock(settings: Settings) -> None:
    service = Service.create(settings, clock=lambda: NOW)
    _seed(service)
    writes: list[str] = []
    with TestClient(create_app(service=service)) as client:
        client.get("/healthz")
        sa.event.listen(service.db.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *a: writes.append(statement)
                        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE"))
                        else None)
        _samples(client)
    assert writes == []


def test_lock_errors_are_counted(settings: Settings) -> None:
    service = Service.create(settings, clock=lambda: NOW)
    backend = service.db.engine.dialect.name
    with TestClient(create_app(service=service)) as client:
        before = _samples(client).get(("doorstep_database_lock_errors_total", (("backend", backend),)), 0.0)
        with service.db.session() as session:
            session.add(KeyValue(key="probe", value="x"))
        if service.db.is_sqlite:
            _sqlite_lock_error(service)
        else:
            _postgres_lock_error(service)
        after = _samples(client)[("doorstep_database_lock_errors_total", (("backend", backend),))]
    assert after == before + 1


def _sqlite_lock_error(service: Service) -> None:
    """Another process holds the write lock; this one gives up after 100 ms ("database is locked")."""
    import sqlite3

    path = service.db.engine.url.database
    assert path
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with service.db.engine.connect() as conn:
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=100")  # type: ignore[union-attr]
            try:
                conn.exec_driver_sql("SELECT 1")  # begins with BEGIN IMMEDIATE: the lock is taken
            except sa.exc.OperationalError:
                pass
            finally:
                conn.invalidate()  # never return the 100 ms connection to the pool
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _postgres_lock_error(service: Service) -> None:
    """Another transaction holds the row; this one waits at most 100 ms (lock_timeout)."""
    other_process = sa.create_engine(service.db.engine.url)
    holder = other_process.connect()
    holder.execute(sa.text("SELECT key FROM kv WHERE key = 'probe' FOR UPDATE"))
    try:
        with service.db.session() as session:
            session.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
            session.execute(sa.text("SELECT key FROM kv WHERE key = 'probe' FOR UPDATE"))
    except sa.exc.OperationalError:
        pass
    finally:
        holder.rollback()
        holder.close()
        other_process.dispose()
