"""Inbox login on the default setup (no DOORSTEP_API_KEY: the key generated at first start).

It answered 500 after 30 s ("database is locked") and stalled the bot: the
login request's session held SQLite's write lock while the key check opened a
second session. Now reads take no write lock, and a thread that opens a second
write transaction while it holds one fails at once (DOORSTEP_STRICT_SESSIONS,
on in the test suite) instead of waiting for itself.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.cli.agents import new_agent_token, token_digest
from bot.core.db import Database, NestedWriteTransaction, ReadOnlySessionError
from bot.core.models import Agent, KeyValue
from bot.core.settings import Settings
from bot.service import Service
from bot.store.auth import ensure_api_key
from tests.handoff.helpers import PHONE, add_order, say


@pytest.fixture
def default_settings(database_url: str) -> Settings:
    """What `make run` has: no API key configured."""
    return Settings(DATABASE_URL=database_url, DOORSTEP_TIMEZONE="Asia/Kolkata",
                    DOORSTEP_CONFIG="does-not-exist.yaml", DOORSTEP_ENV="test")


@pytest.fixture
def service(default_settings: Settings) -> Service:
    assert not default_settings.api_key.get_secret_value()
    return Service.create(default_settings)


def _login(client: TestClient, token: str) -> tuple[int, float]:
    page = client.get("/inbox/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "login form has no CSRF field"
    started = time.monotonic()
    response = client.post("/inbox/login", data={"token": token, "name": "Meera", "csrf": csrf.group(1)},
                           follow_redirects=False)
    return response.status_code, time.monotonic() - started


def test_the_generated_key_logs_in_at_once(service: Service) -> None:
    key = ensure_api_key(service.db, "")  # what `doorstep serve` prints once
    assert key
    with TestClient(create_app(service=service)) as client:
        status, seconds = _login(client, key)
        assert status == 303 and seconds < 5
        page = client.get("/inbox")
        assert page.status_code == 200 and "Signed in as <strong>Meera</strong>" in page.text
        # The API takes the same key.
        assert client.get("/api/escalations", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_an_agent_token_logs_in_at_once(service: Service) -> None:
    ensure_api_key(service.db, "")
    token = new_agent_token()
    with service.db.session() as session:
        session.add(Agent(name="Ravi", token_sha256=token_digest(token)))
    with TestClient(create_app(service=service)) as client:
        status, seconds = _login(client, token)
        assert status == 303 and seconds < 5
        assert "Signed in as <strong>Ravi</strong>" in client.get("/inbox").text


def test_a_wrong_key_is_refused_without_a_stall(service: Service) -> None:
    ensure_api_key(service.db, "")
    with TestClient(create_app(service=service)) as client:
        status, seconds = _login(client, "dsk_wrong")
        assert status == 303 and seconds < 5
        assert client.get("/inbox", follow_redirects=False).status_code == 303  # still logged out


def test_the_bot_keeps_answering_while_the_api_is_read(service: Service) -> None:
    """Reads (the API, the key check) never wait for, or hold up, the bot's writes."""
    key = ensure_api_key(service.db, "")
    add_order(service)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with TestClient(create_app(service=service)) as client:
                for _ in range(20):
                    assert client.get("/api/orders/A1001", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    started = time.monotonic()
    for _ in range(5):
        assert say(service, "where is my order", phone=PHONE).replies
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert time.monotonic() - started < 30


# ------------------------------------------------------------------ the class: sessions


def test_a_second_write_transaction_on_the_same_thread_is_an_error(db: Database) -> None:
    with db.session() as outer:
        outer.exec(select(KeyValue)).all()  # the write transaction has begun
        with pytest.raises(NestedWriteTransaction), db.session() as inner:
            inner.exec(select(KeyValue)).all()
    # Sequential write transactions are fine, and a read inside a write never waits.
    with db.session() as session:
        session.add(KeyValue(key="k", value="v"))
        with db.read() as reading:
            assert reading.exec(select(KeyValue)).all() == []  # the uncommitted row is not visible
    with db.read() as reading:
        assert [row.key for row in reading.exec(select(KeyValue))] == ["k"]


def test_write_transactions_on_other_threads_are_not_nesting(db: Database) -> None:
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.session() as session:
            session.add(KeyValue(key="held", value="1"))
            session.flush()
            ready.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(10)
    with db.read() as reading:  # a reader on another thread is not blocked by the writer
        assert reading.exec(select(KeyValue)).all() == []
    release.set()
    thread.join(10)
    with db.session() as session:  # and a writer here, afterwards, is not "nested"
        assert [row.key for row in session.exec(select(KeyValue))] == ["held"]


def test_a_read_only_session_refuses_to_write(db: Database) -> None:
    with pytest.raises(ReadOnlySessionError), db.read() as session:
        session.add(KeyValue(key="k", value="v"))
        session.flush()
    with db.read() as session:
        assert session.exec(select(KeyValue)).all() == []


def test_rows_are_stamped_by_the_database_clock(db: Database) -> None:
    from datetime import UTC, datetime

    fixed = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    db.clock = lambda: fixed
    with db.session() as session:
        session.add(KeyValue(key="k", value="v"))
    with db.read() as session:
        assert session.exec(select(KeyValue)).one().updated_at == fixed



def test_inbox_pages_and_the_live_poll_never_wait_for_a_writer(service: Service) -> None:
    """Every agent's browser polls the conversation: those reads take no write lock."""
    from tests.handoff.helpers import escalate

    key = ensure_api_key(service.db, "")
    assert key
    add_order(service)
    escalate(service)
    with TestClient(create_app(service=service)) as client:
        assert _login(client, key)[0] == 303
        page = client.get("/inbox")
        escalation = re.search(r'href="/inbox/escalations/(\d+)"', page.text)
        assert escalation
        ready, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            with service.db.session() as session:
                session.add(KeyValue(key="busy", value="1"))
                session.flush()
                ready.set()
                release.wait(20)

        writer = threading.Thread(target=hold_the_write_lock)
        writer.start()
        try:
            assert ready.wait(10)
            started = time.monotonic()
            for path in ("/inbox", f"/inbox/escalations/{escalation.group(1)}",
                         f"/inbox/escalations/{escalation.group(1)}/live"):
                assert client.get(path).status_code == 200, path
            assert time.monotonic() - started < 5
        finally:
            release.set()
            writer.join(20)
