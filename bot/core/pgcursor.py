"""The psycopg cursor of the PostgreSQL engines: PostgreSQL's own `$1` placeholders, and a
`description` built only when something reads it.

psycopg builds `cursor.description` afresh on every access: a `Column` per result column, each
decoding its name and looking its type up in the adapters' registry. SQLAlchemy asks for it after
every statement, but for a statement it has run before (its compiled form cached) it only checks
that there is one and uses the result metadata it kept from the first run. On the message path,
where every statement is such a one, building the columns was ≈ 6 % of a reply's CPU
(docs/benchmarks.md). Here `description` is None exactly when psycopg's would be, and otherwise a
sequence that builds psycopg's columns on first use, from the same result.

Imported only when a PostgreSQL engine is made (SQLite users do not load psycopg)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg.pq import ExecStatus

_WITH_ROWS = (ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK)


class LazyDescription(Sequence[psycopg.Column]):
    """psycopg's `description` of one result, built on first use.

    It must be read while that result is still the cursor's current one (SQLAlchemy reads it at once,
    when it sets the result up); read later, it raises instead of describing another statement."""

    __slots__ = ("_cursor", "_result", "_columns")

    def __init__(self, cursor: Cursor, result: Any) -> None:
        self._cursor, self._result = cursor, result
        self._columns: list[psycopg.Column] | None = None

    def _built(self) -> list[psycopg.Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:
                raise RuntimeError("cursor.description read after the cursor ran another statement")
            self._columns = psycopg.RawCursor.description.fget(self._cursor) or []  # type: ignore[attr-defined]
        return self._columns

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[psycopg.Column]: ...

    def __getitem__(self, index: int | slice) -> psycopg.Column | Sequence[psycopg.Column]:
        return self._built()[index]

    def __len__(self) -> int:
        return len(self._built())

    def __iter__(self) -> Iterator[psycopg.Column]:
        return iter(self._built())

    def __repr__(self) -> str:
        return repr(self._built())


class Cursor(psycopg.RawCursor[Any]):
    """psycopg's `RawCursor` (`$1` placeholders) whose `description` is built on first use."""

    @property
    def description(self) -> LazyDescription | None:  # type: ignore[override]
        result = self.pgresult
        if result and (result.nfields or result.status in _WITH_ROWS):  # as psycopg decides it
            return LazyDescription(self, result)
        return None
