"""The intent model was trained on a customer's first message, inside the conversation
transaction (holding SQLite's write lock for seconds), and in the Docker image on every
process, because the model trained at build time was private to root.

Now: the cached model is readable by any user, the service loads it before it serves
(readiness waits), a model that cannot be saved stays in memory, and no message
transaction ever loads or trains it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.core.channels import InboundMessage
from bot.core.settings import Settings
from bot.service import Service
from intents import classifier
from intents.model import load_or_train
from tests.intents.test_model import TINY, write_nlu


@pytest.fixture
def cold_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A process with no model loaded and none cached: the next load trains (on small data, so it is quick)."""
    data = tmp_path / "nlu-data"
    data.mkdir()
    write_nlu(data / "nlu.yml", TINY)
    monkeypatch.setenv("DOORSTEP_DATA_DIR", str(data))
    monkeypatch.setenv("DOORSTEP_MODEL_DIR", str(tmp_path / "model"))
    classifier.reset_model()
    yield tmp_path / "model"
    classifier.reset_model()  # the rest of the suite loads the real model again


def test_the_cached_model_is_readable_by_the_user_that_serves(cold_model: Path) -> None:
    load_or_train()
    (cached,) = cold_model.glob("nlu-*.pkl")
    mode = stat.S_IMODE(cached.stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)  # group and others can read it (an image built as root)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to act as another user")
def test_a_model_trained_by_root_loads_for_another_user_without_training(cold_model: Path) -> None:
    """The Docker image: root trains at build time, an unprivileged user serves."""
    shared = Path(tempfile.mkdtemp(prefix="doorstep-model-"))
    try:
        shared.chmod(0o755)
        data_dir = Path(os.environ["DOORSTEP_DATA_DIR"])
        public_data = shared / "data"
        shutil.copytree(data_dir, public_data)
        public_data.chmod(0o755)
        env = {**os.environ, "DOORSTEP_MODEL_DIR": str(shared / "model"), "DOORSTEP_DATA_DIR": str(public_data)}
        subprocess.run([sys.executable, "-c", "from intents.model import load_or_train; load_or_train()"],
                       env=env, check=True, timeout=120)
        as_nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
             "from intents.model import load_or_train\nnotes = []\nload_or_train(progress=notes.append)\n"
             "print('trained' if notes else 'loaded')"],
            env={**env, "HOME": str(shared)}, capture_output=True, text=True, timeout=120)
        assert as_nobody.returncode == 0, as_nobody.stderr
        assert as_nobody.stdout.strip() == "loaded", as_nobody.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_model_dir_that_cannot_be_written_keeps_the_model_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cold_model: Path, settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("DOORSTEP_MODEL_DIR", str(blocker / "model"))  # mkdir fails, as in a read-only image
    service = Service.create(settings)
    with caplog.at_level(logging.WARNING, logger="intents.model"):
        service.load_model()
    assert service.model.state == "ready"
    assert any("keeping it in memory" in r.getMessage() for r in caplog.records)
    loaded = classifier.get_model()
    for text in ("where is my order", "cancel my order"):
        service.handle_inbound(InboundMessage(channel="console", text=text, phone="+919812345678",
                                              provider_message_id=f"m-{uuid.uuid4()}"))
    assert classifier.get_model() is loaded  # not trained again for later messages


def test_no_message_transaction_loads_the_model(cold_model: Path, settings: Settings) -> None:
    service = Service.create(settings)
    loaded_inside: list[bool] = []
    loaded_at_begin: dict[int, bool] = {}

    def on_begin(conn: sa.Connection) -> None:
        loaded_at_begin[id(conn)] = classifier.model_loaded()

    def on_end(conn: sa.Connection) -> None:
        before = loaded_at_begin.pop(id(conn), None)
        if before is not None:
            loaded_inside.append(not before and classifier.model_loaded())

    sa.event.listen(service.db.engine, "begin", on_begin)
    sa.event.listen(service.db.engine, "commit", on_end)
    sa.event.listen(service.db.engine, "rollback", on_end)
    assert not classifier.model_loaded()
    handled = service.handle_inbound(InboundMessage(channel="console", text="where is my order",
                                                    phone="+919812345678", provider_message_id="first-message"))
    assert handled.turns and classifier.model_loaded()
    assert loaded_inside and not any(loaded_inside), "the model was loaded inside a database transaction"


def _wait_ready(client: TestClient, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/healthz")
        if response.status_code == 200:
            body: dict[str, object] = response.json()
            return body
        time.sleep(0.05)
    raise AssertionError(f"never ready: {client.get('/healthz').json()}")


def test_healthz_is_not_ready_while_the_model_loads(cold_model: Path, settings: Settings) -> None:
    service = Service.create(settings)
    # Another thread of this process is loading the model (it holds the lock): the server must answer meanwhile.
    classifier._lock.acquire()
    held = True
    try:
        with TestClient(create_app(service=service)) as client:
            try:
                loading = client.get("/healthz")
            finally:
                classifier._lock.release()
                held = False
            assert loading.status_code == 503
            assert loading.json()["model"] == "loading" and "model" in loading.json()["reason"]
            assert loading.json()["status"] == "not_ready"
            ready = _wait_ready(client)
    finally:
        if held:
            classifier._lock.release()
    assert ready["status"] == "ok" and ready["model"] == "ready" and ready["reason"] is None
    assert ready["database"] == service.db.engine.dialect.name


@pytest.mark.postgres
def test_healthz_is_not_ready_when_the_database_is_gone() -> None:
    from tests.conftest import pg_admin_engine

    try:
        admin = pg_admin_engine()
        name = f"doorstep_health_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable: {exc.__class__.__name__}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    settings = Settings(DATABASE_URL=url, DOORSTEP_API_KEY="k" * 32, DOORSTEP_CONFIG="does-not-exist.yaml",
                        DOORSTEP_ENV="test")
    try:
        service = Service.create(settings)
        with TestClient(create_app(service=service)) as client:
            assert _wait_ready(client)["database"] == "postgresql"
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            gone = client.get("/healthz")
            assert gone.status_code == 503
            assert gone.json()["reason"] == "the database is unavailable"
            assert name not in gone.text and "127.0.0.1" not in gone.text
    finally:
        service.db.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
