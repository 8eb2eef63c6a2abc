"""Lists in statements built once, without SQLAlchemy's expanding parameters (whose SQL is rendered
again on every execution).

`constants_in`: a fixed list of the code's own names (statuses, kinds, journey templates) written into
the statement, and nothing else. `list_param`: a list given at execution as one parameter (PostgreSQL
an array, SQLite a JSON array read with json_each), for ids, phones and chats.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bot.core.db import Database, constants_in, list_param
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


def _customers(database_url: str, count: int) -> Database:
    db = Database(database_url)
    db.migrate()
    with db.session() as session:
        session.add_all([Customer(phone=f"+9198{i:08d}", name=f"C{i}", telegram_chat_id=str(7000 + i))
                         for i in range(count)])
    return db


def test_list_param_selects_by_ids_phones_and_chats_one_statement_for_every_length(database_url: str) -> None:
    db = _customers(database_url, 1200)
    postgres = db.is_postgres
    by_id = select(Customer.name).where(list_param(postgres, col(Customer.id), "ids"))
    by_phone = select(Customer.name).where(list_param(postgres, col(Customer.phone), "phones"))
    by_chat = select(Customer.name).where(list_param(postgres, col(Customer.telegram_chat_id), "chats"))
    with db.read() as session:
        ids = list(session.exec(select(Customer.id).order_by(col(Customer.id))))
        assert set(session.exec(by_id, params={"ids": ids[:3]})) == {"C0", "C1", "C2"}  # type: ignore[call-overload]
        assert len(set(session.exec(by_id, params={"ids": ids}))) == 1200  # type: ignore[call-overload]
        assert set(session.exec(by_id, params={"ids": []})) == set()  # type: ignore[call-overload]
        assert set(session.exec(by_phone, params={"phones": ["+919800000007", "+10000"]})) == {"C7"}  # type: ignore[call-overload]
        assert set(session.exec(by_chat, params={"chats": ["7011", "7012"]})) == {"C11", "C12"}  # type: ignore[call-overload]
    assert not by_id.compile(dialect=db.engine.dialect).params.get("ids")  # no list rendered into the text
    assert "POSTCOMPILE" not in str(by_id.compile(dialect=db.engine.dialect))
