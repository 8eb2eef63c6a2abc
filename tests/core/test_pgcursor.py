"""The PostgreSQL engines' cursor describes a result as psycopg does, only later.

`bot.core.pgcursor.Cursor` builds `description` on first use (SQLAlchemy only checks it is there for
a statement it has cached). These tests hold it to psycopg's own description, on the real server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.core.db import Database
from bot.core.models import Customer
from bot.core.pgcursor import Cursor


@pytest.fixture
def pg(_pg_migrated: str) -> Any:
    db = Database(_pg_migrated)
    yield db
    db.dispose()


@pytest.fixture
def raw(pg: Database) -> Iterator[Any]:
    """A pooled driver connection of the engine (its cursors are the engine's), rolled back afterwards."""
    connection = pg.engine.raw_connection()
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def _described(description: Any) -> list[tuple[Any, ...]]:
    return [tuple(column) for column in description]


def test_the_engines_use_it(pg: Database) -> None:
    with pg.engine.connect() as conn:
        assert type(conn.connection.dbapi_connection.cursor()) is Cursor  # type: ignore[union-attr]


@pytest.mark.parametrize("sql", ["SELECT 1 AS one, 'x'::text AS name, now() AS at",
                                 "SELECT id, phone, locale FROM customer WHERE false",
                                 "SELECT"])
def test_describes_a_result_as_psycopg_does(raw: Any, sql: str) -> None:
    ours, theirs = raw.cursor(), psycopg.RawCursor(raw.dbapi_connection)
    ours.execute(sql)
    theirs.execute(sql)
    assert ours.description is not None and theirs.description is not None
    assert len(ours.description) == len(theirs.description)
    assert _described(ours.description) == _described(theirs.description)
    assert [c.name for c in ours.description] == [c.name for c in theirs.description]


def test_no_description_without_a_result(raw: Any) -> None:
    cursor = raw.cursor()
    assert cursor.description is None  # nothing run yet
    cursor.execute("UPDATE customer SET locale = locale WHERE false")
    assert cursor.description is None
    cursor.execute("UPDATE customer SET locale = locale WHERE false RETURNING id")
    assert [c.name for c in cursor.description] == ["id"]


def test_a_description_read_after_the_next_statement_raises(raw: Any) -> None:
    cursor = raw.cursor()
    cursor.execute("SELECT 1 AS first")
    early = cursor.description
    cursor.execute("SELECT 2 AS second")
    with pytest.raises(RuntimeError, match="another statement"):
        list(early)
    assert [c.name for c in cursor.description] == ["second"]


def test_sqlalchemy_results_by_name_first_run_and_cached(pg: Database) -> None:
    """A statement's first run reads the description (names matched to columns); later runs reuse it."""
    phone = f"+9198{uuid.uuid4().int % 10**8:08d}"  # the session's database is shared by the module's tests
    with pg.session() as session:
        session.add(Customer(phone=phone, name="Asha"))
    statement = sa.text("SELECT name, phone AS number FROM customer WHERE phone = :p")
    for _ in range(3):
        with pg.read() as session:
            row = session.execute(statement, {"p": phone}).one()
            assert (row.name, row.number) == ("Asha", phone)
            found = session.exec(select(Customer).where(Customer.phone == phone)).one()
            assert found.name == "Asha"
