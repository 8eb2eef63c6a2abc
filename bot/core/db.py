"""Engine, sessions, migrations and the two backend-specific primitives.

The rest of the code is backend-agnostic; only here do SQLite and PostgreSQL
differ: how a transaction takes the per-conversation lock, and how the
dispatcher claims due outbox rows without two workers taking the same one.

Two kinds of session:
- `session()` writes. On SQLite it begins with `BEGIN IMMEDIATE` (the one write
  lock), so writers queue instead of failing half-way.
- `read()` only reads. On SQLite it begins a deferred transaction, which under
  WAL never waits for the writer and never blocks it; flushing a change in it
  is an error.

A thread that holds a write transaction and opens a second one waits for
itself (SQLite: 30 s of "database is locked" that stalls every other writer;
PostgreSQL: a second connection that may wait on the first one's row locks).
That is always a bug: with DOORSTEP_STRICT_SESSIONS=1 (the test suite) it
raises `NestedWriteTransaction` at once, otherwise it logs a warning. The
check follows `session()` blocks per thread; a FastAPI request's session
(`request_session()`) begins and ends on different worker threads, so it is
kept out of that bookkeeping, and what a request only reads goes through
`read()`.

Rows get `created_at` / `updated_at` / `due_at` from the database's clock
(the service's runtime clock), stamped at flush. A write transaction that added
outbox rows calls `after_outbox_commit` once it has committed: the service
wakes the dispatchers there, whoever wrote the rows (a reply, a journey, an
API call, an agent).

Dropped connections (PostgreSQL restarted, a proxy's idle timeout): no
pre-ping (a round trip before every transaction). A connection the driver
already knows is closed is replaced at checkout, for free; one that turns out
dead at its first use invalidates the pool (SQLAlchemy does, for every
connection of that generation) and the units of work on the message path
(`receive`, `process`, claim, record) run once more through
`retry_on_disconnect`. A unit is never re-run when the connection died
during its COMMIT: it may have committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from bot.core.clock import Clock, system_clock
from intents.errors import DoorstepError

log = logging.getLogger(__name__)

READ_ONLY = "doorstep_read_only"  # execution option marking a read-only engine view

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
IN_COMMIT = "doorstep_in_commit"  # set on a DBAPIError raised by COMMIT: the unit may have committed

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept the URL forms of DESIGN.md; the store itself runs on sync drivers.

    `postgresql+asyncpg://` and bare `postgresql://` run on psycopg 3, which
    serves sync sessions and is the one driver installed.
    """
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def strict_sessions() -> bool:
    """Raise on a nested write transaction (tests and development) instead of logging it.

    Not the default in production: a FastAPI request's session may begin on one
    worker thread and commit on another, so a busy server can see a harmless
    overlap that looks like nesting; a warning with the stack is enough there.
    """
    return os.environ.get("DOORSTEP_STRICT_SESSIONS", "").lower() in {"1", "true", "yes"}


class NestedWriteTransaction(DoorstepError, RuntimeError):
    """A thread that holds a write transaction opened a second one (it would wait for itself)."""


class ReadOnlySessionError(DoorstepError, RuntimeError):
    """Something tried to write through a `Database.read()` session."""


class AckPriority:
    """Acknowledgements first: while a webhook request is being acknowledged (verified, parsed,
    group-committed), the inbound processing of this process does not begin new transactions: its
    threads pass one at a time, one per `PASS_INTERVAL`, until no acknowledgement is in flight.

    SQLite has one writer: without this a batch of acknowledgements queues behind every processing
    transaction that keeps taking the write lock (its busy handler polls, the processors race in
    first). On both backends the processing threads otherwise take the interpreter (the GIL) from
    the webhooks' event loop. Processing never stops: it runs freely between acknowledgements and
    at `1 / PASS_INTERVAL` transactions a second under a steady stream of them."""

    PASS_INTERVAL = 0.02  # while acknowledgements stream in, one processing transaction may begin per interval

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._acks = 0
        self._next_pass = 0.0

    @contextmanager
    def acknowledging(self) -> Iterator[None]:
        with self._cond:
            self._acks += 1
        try:
            yield
        finally:
            with self._cond:
                self._acks -= 1
                if not self._acks:
                    self._cond.notify_all()

    def yield_to_acks(self) -> None:
        """Wait while acknowledgements are in flight; processing threads pass one per `PASS_INTERVAL`
        meanwhile (all of them at once when none is in flight), so processing never stops."""
        if not self._acks:  # the common case, no acknowledgement in flight, takes no lock
            return
        with self._cond:
            while self._acks:
                now = time.monotonic()
                if now >= self._next_pass:
                    self._next_pass = now + self.PASS_INTERVAL
                    return
                self._cond.wait(self._next_pass - now)


class Database:
    """One engine plus its session factory. Create one per process (or per test)."""

    _open: weakref.WeakSet[Database] = weakref.WeakSet()

    def __init__(self, url: str, *, echo: bool = False, clock: Clock = system_clock) -> None:
        self.url = normalise_url(url)
        self.clock = clock
        # What the send planner reads in every write session (bot.store.planning): the shop's config,
        # whether TWILIO_WHATSAPP_TEMPLATES maps templates, the shop's timezone. Set by the service.
        self.planning: dict[str, Any] = {}
        self.engine: Engine
        if self.url.startswith("sqlite"):
            self.engine = sa.create_engine(self.url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
            _make_sqlite_serialisable(self.engine)
        else:
            self.engine = _postgres_engine(self.url, echo=echo, pool_size=5, max_overflow=10)
        self._writes = threading.local()  # the write sessions this thread has open (the nesting guard)
        # Called after a write transaction that added outbox rows commits (the service wakes the dispatchers).
        self.after_outbox_commit: Callable[[], None] | None = None
        self._ack_engine: Engine | None = None
        self._notifier = _Notifier(self.conninfo) if self.is_postgres else None
        self.ack_priority = AckPriority()
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._sessions = sessionmaker(self.engine, class_=Session, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine, class_=Session, expire_on_commit=False)
        Database._open.add(self)

    @classmethod
    def dispose_all(cls) -> None:
        """Close every pooled connection of every Database in this process (shutdown, test teardown)."""
        for database in list(cls._open):
            database.dispose()

    @property
    def ack_engine(self) -> Engine:
        """The webhooks' acknowledgement writer's own small pool (bot/conversation/ack.py), so an
        acknowledgement never waits for a connection behind conversation work. Created at first use."""
        if self._ack_engine is None:
            if self.is_sqlite and ":memory:" in self.url:
                self._ack_engine = self.engine  # one in-memory database per connection pool
            elif self.is_sqlite:
                self._ack_engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30},
                                                    pool_size=1, max_overflow=1)
                _make_sqlite_serialisable(self._ack_engine)
            else:
                self._ack_engine = _postgres_engine(self.url, pool_size=1, max_overflow=1)
        return self._ack_engine

    @property
    def conninfo(self) -> str:
        """The database's URL as libpq takes it (psycopg's own connections: LISTEN, NOTIFY)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: commits on success, rolls back on error."""
        self._check_nesting()
        with self._write(tracked=True) as session:
            yield session

    @contextmanager
    def request_session(self) -> Iterator[Session]:
        """`session()` for a FastAPI dependency: entered and left on different worker threads, so it
        is not on any thread's stack of open writes (the request's routes read with `read()`)."""
        with self._write(tracked=False) as session:
            yield session

    @contextmanager
    def _write(self, *, tracked: bool) -> Iterator[Session]:
        with self._sessions(info={"clock": self.clock, "planning": self.planning}) as session:
            with _committed(session, self._open_writes() if tracked else []):
                yield session
            if session.info.pop(OUTBOX_WRITTEN, False) and self.after_outbox_commit is not None:
                self._outbox_committed()

    @contextmanager
    def write_connection(self) -> Iterator[sa.Connection]:
        """`session()` for Core statements only (no ORM objects, no flush, no stamping): a write
        transaction on a plain connection, without the ORM session's bookkeeping (CPU that cost
        more than the statements of a small transaction). Same lock (SQLite: BEGIN IMMEDIATE), same
        nesting guard, and a failed COMMIT is marked for `retry_on_disconnect` the same way. Must
        not add outbox rows (nothing wakes the dispatchers after it)."""
        self._check_nesting()
        with self.engine.connect() as conn:
            conn.begin()
            with _committed(conn, self._open_writes()):
                yield conn

    def _outbox_committed(self) -> None:
        try:
            self.after_outbox_commit()  # type: ignore[misc]
        except Exception:  # the rows are committed: dispatchers find them at their next poll
            log.warning("waking the dispatchers after a commit failed", exc_info=True)

    def retry_on_disconnect(self, unit: Callable[[], T], *, what: str) -> T:
        """Run `unit` (one or more whole transactions); once more if the connection was found dead
        before its COMMIT (nothing of it committed: the server aborts a dead session's transaction)."""
        try:
            return unit()
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated or getattr(exc, IN_COMMIT, False):
                raise
            log.warning("database connection lost during %s; running it again on a fresh connection", what)
        return unit()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction: takes no write lock, and refuses to flush a change."""
        # Closing (not rolling back) ends the transaction and keeps what was loaded readable.
        with self._read_sessions(info={"clock": self.clock, READ_ONLY: True, "database": self}) as session:
            yield session

    # -------------------------------------------------------------- the nesting guard

    def _open_writes(self) -> list[Session | sa.Connection]:
        stack: list[Session | sa.Connection] | None = getattr(self._writes, "stack", None)
        if stack is None:
            stack = self._writes.stack = []
        return stack

    def _check_nesting(self) -> None:
        """A write session opened while this thread's open write session already holds a transaction."""
        if any(held.in_transaction() for held in self._open_writes()):
            message = ("this thread already holds a write transaction and opened another one; "
                       "pass the open session down, or read with Database.read()")
            if strict_sessions():
                raise NestedWriteTransaction(message)
            log.warning(message, stack_info=True)

    def lock_row(self, session: Session, table: str, row_id: int) -> None:
        """Take the row lock that serialises work on one conversation (or order).

        PostgreSQL: `SELECT … FOR NO KEY UPDATE` (what an UPDATE of the row takes): it serialises
        every holder of this lock, but not the foreign-key checks of rows that *reference* the row
        (`FOR KEY SHARE`), so storing or identifying a message of a busy conversation never waits
        for its conversation work (nor deadlocks with it). SQLite: every transaction already
        began with `BEGIN IMMEDIATE` (one writer at a time), so nothing to do.
        """
        if self.is_postgres:
            session.execute(sa.text(f"SELECT id FROM {table} WHERE id = :id FOR NO KEY UPDATE"), {"id": row_id})

    def locked(self, query: Any) -> Any:
        """`query` (a select of rows in id order) taking `lock_row`'s lock on every row it reads, in one
        statement: two batches that share rows take them in the same order, so they wait for each other
        instead of deadlocking. `FOR NO KEY UPDATE` as in `lock_row`: a batch that identifies messages
        (foreign-key checks, `FOR KEY SHARE`) in the same transaction before it locks its conversations
        never waits for, or deadlocks with, another. SQLite: the query as it is (one writer)."""
        return query.with_for_update(key_share=True) if self.is_postgres else query

    def skip_locked(self) -> dict[str, Any]:
        """`with_for_update` arguments for claim queries (empty on SQLite)."""
        return {"skip_locked": True} if self.is_postgres else {}

    def migrate(self) -> None:
        migrate(self.engine)

    def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL `NOTIFY channel, payload`, committed at once (no-op on SQLite). Raises the
        driver's error when the server cannot be reached; the next call connects again."""
        if self._notifier is not None:
            self._notifier.notify(channel, payload)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._ack_engine is not None:
            self._ack_engine.dispose()
        if self._notifier is not None:
            self._notifier.close()


class _Notifier:
    """One autocommit connection of its own for NOTIFY, kept open: a notification after every outbox
    commit went through the pool at ten times the statement's CPU (checking a connection out, switching
    it to autocommit and back, SQLAlchemy's execution). Shared by the process's threads under a lock; a
    forked child opens its own; a failed connection is dropped and the next call opens another."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    def notify(self, channel: str, payload: str) -> None:
        import psycopg

        with self._lock:
            if self._conn is None or self._pid != os.getpid() or self._conn.closed:
                self._conn, self._pid = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10), os.getpid()
            try:
                self._conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
            except psycopg.Error:
                self._drop()
                raise

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():  # a forked child leaves its parent's connection alone
                self._drop()
            self._conn = None

    def _drop(self) -> None:
        import psycopg

        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


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


@contextmanager
def _committed(unit: Session | sa.Connection, stack: list[Session | sa.Connection]) -> Iterator[None]:
    """Commit `unit` when the block ends normally, roll it back otherwise; an error raised by the
    COMMIT itself is marked (`IN_COMMIT`): it may have committed, so it is never run again. `unit` is
    on `stack` (this thread's open writes, the nesting guard) meanwhile."""
    stack.append(unit)
    committing = False
    try:
        yield
        committing = True
        unit.commit()
    except BaseException as exc:
        if committing and isinstance(exc, sa.exc.DBAPIError):
            setattr(exc, IN_COMMIT, True)
        unit.rollback()
        raise
    finally:
        stack.remove(unit)


def _postgres_engine(url: str, *, echo: bool = False, pool_size: int, max_overflow: int) -> Engine:
    """A PostgreSQL engine as every pool of a Database has it.

    No pre-ping: it costs a round trip per transaction (dead connections: the module docstring,
    `_replace_closed_at_checkout`). PostgreSQL's own `$1` placeholders (SQLAlchemy's `numeric_dollar`
    paramstyle, psycopg's `RawCursor`) instead of `%(name)s`, which psycopg rewrites into `$1` on every
    execution and caches only for statements up to 4 KB: a batch's multi-row INSERT (50 replies,
    ~1,000 placeholders) was parsed again each time, ≈ 13 % of a 50-message batch's instructions.
    No named (server-side) cursor is used: psycopg's would expect `%s`. The cursor builds its
    `description` only when read (`bot.core.pgcursor`)."""
    from bot.core.pgcursor import Cursor

    engine = sa.create_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False,
                              paramstyle="numeric_dollar", connect_args={"cursor_factory": Cursor})
    _replace_closed_at_checkout(engine)
    return engine


def _replace_closed_at_checkout(engine: Engine) -> None:
    """A pooled connection the driver knows is closed or broken is replaced at checkout (no round trip)."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
            raise sa.exc.DisconnectionError("pooled connection is closed")


def _make_sqlite_serialisable(engine: Engine) -> None:
    """SQLite allows one writer: take the write lock at BEGIN so transactions queue
    instead of failing with "database is locked" half-way (SQLAlchemy's documented recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA secure_delete=ON")  # freed cells and pages are zeroed (erasure, bot/store/erasure.py)
        if ":memory:" not in str(engine.url):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Readers take a deferred transaction: under WAL they never wait for (or block) the writer.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


# ------------------------------------------------------------------ stamping and read-only sessions

_STAMPED_ON_INSERT = ("created_at", "updated_at", "due_at")


_STAMPED_BY_CLASS: dict[type, tuple[tuple[str, ...], bool]] = {}
OUTBOX_WRITTEN = "doorstep_outbox_written"  # session.info flag: this transaction added outbox rows


def _stamped_columns(cls: type) -> tuple[tuple[str, ...], bool]:
    """The model's columns stamped on insert, and whether it has `updated_at`, read once per class from
    its mapper (`hasattr` on a model instance goes through pydantic's slow `__getattr__` when absent)."""
    found = _STAMPED_BY_CLASS.get(cls)
    if found is None:
        attributes: set[str] = set(sa.inspect(cls).attrs.keys())
        found = (tuple(name for name in _STAMPED_ON_INSERT if name in attributes), "updated_at" in attributes)
        _STAMPED_BY_CLASS[cls] = found
    return found


@event.listens_for(Session, "before_flush")
def _stamp_and_guard(session: Session, _context: Any, _instances: Any) -> None:
    """Timestamps from the session's clock; no change may leave a read-only session."""
    if session.info.get(READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlySessionError("a read-only session (Database.read()) tried to write; use Database.session()")
    clock: Clock | None = session.info.get("clock")
    if clock is None:
        return
    now: datetime | None = None
    for row in session.new:
        if type(row).__tablename__ == "outbox":
            session.info[OUTBOX_WRITTEN] = True  # dispatchers are woken after the commit (Database._write)
        for name in _stamped_columns(type(row))[0]:
            if getattr(row, name) is None:
                now = now or clock()
                setattr(row, name, now)
    for row in session.dirty:
        if _stamped_columns(type(row))[1] and session.is_modified(row, include_collections=False):
            history = sa.inspect(row).attrs.updated_at.history
            if not history.added:
                now = now or clock()
                row.updated_at = now


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


def session_now(session: Session) -> datetime:
    """Now, by the clock of the database this session belongs to (the service's runtime clock)."""
    clock: Clock = session.info.get("clock") or system_clock
    return clock()


def one_of(session: Session, column: Any, values: Collection[int]) -> Any:
    """`column IN (values)` for a batch of integer ids: on PostgreSQL `column = ANY(:array)`, one
    parameter, so the statement text (and psycopg's parse of it) is the same whatever the batch size;
    an IN list of 500 parameters cost more to prepare than to run."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(sa.Integer())))
    return column.in_(list(values))


_CONSTANT = re.compile(r"[A-Za-z0-9_.:-]+")


def constants_in(column: Any, values: Collection[str]) -> Any:
    """`column IN ('a', 'b')` for a fixed list of the code's own names (statuses, kinds, templates),
    written into the statement's text. A list given to `in_` becomes an expanding parameter, and a
    statement with one has its SQL rendered again on every execution (≈ 0.1–0.2 ms a claim); these
    are rendered once, with the statement. Only plain names are accepted: never data."""
    values = list(values)
    if not values or any(not isinstance(v, str) or not _CONSTANT.fullmatch(v) for v in values):
        raise ValueError(f"constants_in takes a non-empty list of plain names, not {values!r}")
    return column.in_([sa.literal_column(f"'{v}'", type_=column.type) for v in values])


def ids_param(postgres: bool, column: Any, name: str) -> Any:
    """`one_of` for a statement built once: `column` is one of the integer ids given as the
    parameter `name` (a list) at execution; the same text whatever their number."""
    return list_param(postgres, column, name, sa.Integer())


def list_param(postgres: bool, column: Any, name: str, item_type: Any = None) -> Any:
    """`column IN :name` for a statement built once, the list bound at execution as one parameter, so
    the statement's text is the same whatever the list's length: PostgreSQL `column = ANY(:name)` (an
    array), SQLite `column IN (SELECT value FROM json_each(:name))` (a JSON array; the column's index
    is searched for each value). An expanding `IN` list instead had SQLAlchemy render the statement
    again on every execution, and SQLite prepare it again for every new length."""
    if postgres:
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(name, type_=ARRAY(item_type if item_type is not None else column.type)))
    values = sa.func.json_each(sa.bindparam(name, type_=sa.JSON())).table_valued("value")
    return column.in_(sa.select(values.c.value).scalar_subquery())
