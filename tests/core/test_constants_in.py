"""`constants_in`: a fixed list of the code's own names written into a statement, and nothing else.

The claim and the batch's order query filter on constant lists (statuses, kinds, journey templates);
an ordinary `in_` makes them an expanding parameter, whose SQL is rendered again on every execution.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bot.core.db import Database, constants_in
from bot.core.models import Customer


@pytest.mark.parametrize("values", [[], ["pending", "x' OR '1'='1"], ["pending", 3], ["two words"], ["a;b"]])
def test_only_plain_names_are_accepted(values: list[object]) -> None:
    with pytest.raises(ValueError, match="plain names"):
        constants_in(col(Customer.locale), values)  # type: ignore[arg-type]


def test_written_into_the_statement_not_an_expanding_parameter() -> None:
    statement = select(Customer.id).where(constants_in(col(Customer.locale), ("en", "es")))
    compiled = statement.compile()
    assert "IN ('en', 'es')" in str(compiled)
    assert not compiled.params  # nothing bound at execution, nothing rendered again per execution
    expanding = select(Customer.id).where(col(Customer.locale).in_(("en", "es"))).compile()
    assert "POSTCOMPILE" in str(expanding)  # what an ordinary `in_` does, for contrast


def test_selects_the_same_rows_as_in(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    with db.session() as session:
        for i, locale in enumerate(["en", "es", "hi", "en"]):
            session.add(Customer(phone=f"+91980000000{i}", name=f"C{i}", locale=locale))
    with db.read() as session:
        ours = set(session.exec(select(Customer.name).where(constants_in(col(Customer.locale), ["en", "hi"]))))
        theirs = set(session.exec(select(Customer.name).where(col(Customer.locale).in_(["en", "hi"]))))
        counted = session.execute(sa.select(sa.func.count()).where(constants_in(col(Customer.locale), ["es"]))).scalar()
    assert ours == theirs == {"C0", "C2", "C3"}
    assert counted == 1
