"""Shared fixtures: every store/engine test runs on SQLite and on PostgreSQL.

PostgreSQL: DOORSTEP_TEST_PG_URL (default the local server's `test` database
as admin; the `postgres` maintenance database when `test` does not exist). Each
test session creates its own throw-away database, so parallel runs never collide. With CI=true an unreachable PostgreSQL fails the run
instead of skipping.

An autouse guard fails any test that opens a connection to a non-loopback
address: tests talk only to fakes on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from bot import wiring
from bot.app import create_app
from bot.core.db import Database
from bot.core.settings import Settings
from bot.service import Service
from tests.fakes.smtp_server import FakeSMTP
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.viber_server import FakeViber

# The integrations' senders, as `serve` and `worker` register them (tests build Dispatchers directly).
wiring.install()

# A thread that opens a second write transaction while it holds one is an error here, not a 30 s stall
# (bot/core/db.py); subprocesses the tests start (`doorstep serve`) inherit it.
os.environ["DOORSTEP_STRICT_SESSIONS"] = "1"

PG_ADMIN_URL = os.environ.get("DOORSTEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_API_KEY = "test-api-key-0123456789abcdef"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# ------------------------------------------------------------------ network guard

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in {"localhost", "::1"} or host.startswith("127.") or host == "0.0.0.0"
    return True  # unix sockets


def _guarded_connect(self: socket.socket, address: object) -> object:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach a non-loopback address {address!r}; use a fake in tests/fakes/")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach a non-loopback address {address!r}; use a fake in tests/fakes/")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _close_databases() -> Iterator[None]:
    """Every engine a test created gives its connections back, so PostgreSQL never runs out."""
    yield
    Database.dispose_all()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's .env or real provider credentials."""
    for name in list(os.environ):
        if name.startswith(("TWILIO_", "TELEGRAM_", "OPENAI_", "LOGISTICS_", "CHATWOOT_", "DOORSTEP_", "EMAIL_",
                            "VIBER_")) and name not in {
            "DOORSTEP_TEST_PG_URL", "DOORSTEP_MODEL_DIR", "DOORSTEP_DATA_DIR", "DOORSTEP_UPDATE_DOCS",
            "DOORSTEP_STRICT_SESSIONS"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


# ------------------------------------------------------------------ databases


def pg_admin_engine(url: str = PG_ADMIN_URL) -> sa.Engine:
    """An AUTOCOMMIT engine that can create databases: `url`, or, when its database does not
    exist (a fresh server has no `test` database), the server's `postgres` maintenance database."""
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            return admin
    except sa.exc.OperationalError as exc:
        if "does not exist" not in str(exc) or admin.url.database == "postgres":
            raise
    admin.dispose()
    return sa.create_engine(admin.url.set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    name = f"doorstep_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin: sa.Engine | None = None
    try:
        admin = pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if admin is not None:
            admin.dispose()
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _pg_migrated(pg_database_url: str) -> str:
    db = Database(pg_database_url)
    db.migrate()
    db.dispose()
    return pg_database_url


def _truncate_all(db: Database) -> None:
    from sqlmodel import SQLModel

    import bot.core.models  # noqa: F401

    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with db.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Parametrises a test over both backends; each test starts from an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'doorstep-test.db'}"
    url: str = request.getfixturevalue("_pg_migrated")
    db = Database(url)
    _truncate_all(db)
    db.dispose()
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(DATABASE_URL=database_url, DOORSTEP_API_KEY=TEST_API_KEY, DOORSTEP_TIMEZONE="Asia/Kolkata",
                    DOORSTEP_CONFIG="does-not-exist.yaml", DOORSTEP_ENV="test")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    database.migrate()
    yield database
    database.dispose()


# ------------------------------------------------------------------ fake providers (real HTTP on loopback)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_viber() -> Iterator[FakeViber]:
    fake = FakeViber().start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp() -> Iterator[FakeSMTP]:
    server = FakeSMTP(require_auth=True).start()  # AUTH over plain SMTP: loopback only
    yield server
    server.stop()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    """The app over the suite's own `service` fixture (each suite builds the service it needs)."""
    with TestClient(create_app(service=service)) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_API_KEY}"}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load (or, with a cold cache, train) the intent model once before any test starts: training takes
    half a minute on an idle machine and minutes on a busy one, which must not count against whichever
    test happens to need the model first."""
    from intents import get_model

    get_model()
