"""Engine, sessions, migrations and the two backend-specific primitives.

The rest of the code is backend-agnostic; only here do SQLite and PostgreSQL
differ: how a transaction takes the per-conversation lock, and how the
dispatcher claims due outbox rows without two workers taking the same one.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept the URL forms of DESIGN.md; the store itself runs on sync drivers.

    `postgresql+asyncpg://` and bare `postgresql://` run on psycopg 3, which
    serves sync sessions and is the one driver installed.
    """
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """One engine plus its session factory. Create one per process (or per test)."""

    _open: weakref.WeakSet[Database] = weakref.WeakSet()

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=5, max_overflow=10, pool_pre_ping=True)
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _make_sqlite_serialisable(self.engine)
        self._sessions = sessionmaker(self.engine, class_=Session, expire_on_commit=False)
        Database._open.add(self)

    @classmethod
    def dispose_all(cls) -> None:
        """Close every pooled connection of every Database in this process (shutdown, test teardown)."""
        for database in list(cls._open):
            database.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def lock_row(self, session: Session, table: str, row_id: int) -> None:
        """Take the row lock that serialises work on one conversation (or order).

        PostgreSQL: `SELECT … FOR UPDATE`. SQLite: every transaction already
        began with `BEGIN IMMEDIATE` (one writer at a time), so nothing to do.
        """
        if self.is_postgres:
            session.execute(sa.text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id})

    def skip_locked(self) -> dict[str, Any]:
        """`with_for_update` arguments for claim queries (empty on SQLite)."""
        return {"skip_locked": True} if self.is_postgres else {}

    def migrate(self) -> None:
        migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def try_insert(session: Session, row: Any) -> bool:
    """Insert `row` inside a savepoint; False (and the row forgotten) if a unique
    constraint says a concurrent transaction inserted the same thing first."""
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        if row in session:
            session.expunge(row)
        return False
    return True


def _make_sqlite_serialisable(engine: Engine) -> None:
    """SQLite allows one writer: take the write lock at BEGIN so transactions queue
    instead of failing with "database is locked" half-way (SQLAlchemy's documented recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if ":memory:" not in str(engine.url):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
        cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Apply every alembic migration (idempotent; runs at each start)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")
