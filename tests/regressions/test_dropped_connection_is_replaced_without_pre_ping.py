"""PostgreSQL restarted (or a proxy closed idle connections): without a pre-ping per transaction,
the first unit of work on a dead pooled connection must run again on a fresh one, and never twice
when the connection died during its COMMIT."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.db import IN_COMMIT, Database
from bot.core.models import Message
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import upsert_order
from tests.support.factories import order_payload


def _kill_pooled_connections(db: Database) -> int:
    """Terminate the server sessions of every connection in this pool (what a server restart does)."""
    idle = db.engine.pool.checkedin()  # type: ignore[attr-defined]
    connections = [db.engine.connect() for _ in range(idle)]
    pids = [conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for conn in connections]
    for conn in connections:
        conn.rollback()
        conn.close()
    admin = sa.create_engine(db.url, poolclass=sa.NullPool)
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    return len(pids)


@pytest.fixture
def pg_service(settings: Settings) -> Service:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("dropped server connections are a PostgreSQL matter")
    service = Service.create(settings)
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
    return service


def _say(service: Service, text: str) -> int:
    handled = service.handle_inbound(InboundMessage(channel="console", text=text, phone="+919812345678",
                                                    provider_message_id=f"t-{uuid.uuid4()}"))
    return len(handled.replies)


def test_inbound_after_the_server_dropped_every_pooled_connection(pg_service: Service,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert _say(pg_service, "where is my order") == 1
    assert _kill_pooled_connections(pg_service.db) >= 1
    with caplog.at_level(logging.WARNING, logger="bot.core.db"):
        assert _say(pg_service, "where is my order") == 1  # stored and answered once, on a fresh connection
    assert "connection lost during receive" in caplog.text
    with pg_service.db.read() as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        assert [m.status for m in inbound] == ["processed", "processed"]
        assert len(session.exec(select(Message).where(Message.direction == "out")).all()) == 2


def test_a_unit_whose_commit_failed_is_not_run_again(pg_service: Service) -> None:
    runs = []

    def unit() -> None:
        runs.append(1)
        error = sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"),
                                        connection_invalidated=True)
        setattr(error, IN_COMMIT, True)
        raise error

    with pytest.raises(sa.exc.OperationalError):
        pg_service.db.retry_on_disconnect(unit, what="test")
    assert runs == [1]


def test_other_database_errors_are_not_retried(pg_service: Service) -> None:
    runs = []

    def unit() -> None:
        runs.append(1)
        with pg_service.db.session() as session:
            session.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.ProgrammingError):
        pg_service.db.retry_on_disconnect(unit, what="test")
    assert runs == [1]
