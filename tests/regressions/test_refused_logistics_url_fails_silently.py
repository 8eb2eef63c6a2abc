"""A refused or permanently failing logistics webhook URL failed silently, while the customer
was told the courier knows.

Now a URL the guard refuses stops `doorstep serve` (and `doorstep worker`) at
start and fails `doorstep config check`; a delivery that fails for good is
logged as an error (without the URL's query, which holds the receiver's token)
and counted in /metrics by outcome.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlmodel import select

from bot.app import create_app
from bot.core.clock import system_clock
from bot.core.models import Outbox
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.orders import upsert_order
from bot.store.outbox import emit_event
from tests.fakes.logistics_receiver import LogisticsReceiver
from tests.support.factories import order_payload
from tests.support.server import DOORSTEP, free_port

SECRET = "whsec_" + base64.b64encode(b"doorstep-test-logistics-secret!!").decode()
REFUSED = "http://[64:ff9b::a9fe:a9fe]/hooks?token=receiver-s3cret"
COUNTER = "doorstep_logistics_webhook_deliveries_total"


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value(COUNTER, {"outcome": outcome}) or 0.0


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "LOGISTICS_WEBHOOK_URL": url, "LOGISTICS_WEBHOOK_SECRET": SECRET,
            "DATABASE_URL": "sqlite:///doorstep.db", "DOORSTEP_CONFIG": "none.yaml"}


def test_config_check_refuses_the_url_and_names_the_setting() -> None:
    checked = subprocess.run([DOORSTEP, "config", "check"], env=_env(REFUSED), capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 1
    assert "LOGISTICS_WEBHOOK_URL" in checked.stdout and "receiver-s3cret" not in checked.stdout + checked.stderr
    ok = subprocess.run([DOORSTEP, "config", "check"], env={**_env("http://127.0.0.1:9/x"),
                                                           "DOORSTEP_ALLOW_PRIVATE_URLS": "true"},
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "LOGISTICS_WEBHOOK_URL: OK" in ok.stdout


@pytest.mark.parametrize("url", [REFUSED, "ftp://logistics.example.com/hooks"])
def test_serve_refuses_to_start(url: str) -> None:
    started = subprocess.run([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(free_port())], env=_env(url),
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2, started.stderr
    assert "LOGISTICS_WEBHOOK_URL" in started.stderr and "receiver-s3cret" not in started.stderr


def _emit(service: Service) -> str:
    with service.db.session() as session:
        order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
        session.flush()
        return emit_event(session=session, type_="delivery.rescheduled", order_id=order.order_id, order_pk=order.id,
                          data={"delivery_date": "2026-11-28"}).id


def _status(service: Service, event_id: str) -> str:
    with service.db.read() as session:
        return session.exec(select(Outbox).where(Outbox.event_id == event_id)).one().status


def test_a_refused_url_is_logged_loudly_and_counted(settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    configured = settings.model_copy(update={"logistics_webhook_url": REFUSED,
                                             "logistics_webhook_secret": SecretStr(SECRET)})
    service = Service.create(configured)
    event_id = _emit(service)
    before = _count("refused")
    with caplog.at_level(logging.INFO):
        asyncio.run(Dispatcher(service.db, configured).run_once_and_close())
    assert _status(service, event_id) == "failed"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("LOGISTICS_WEBHOOK_URL" in m and "NOT told" in m for m in errors), errors
    assert "receiver-s3cret" not in caplog.text
    assert _count("refused") == before + 1
    metrics = TestClient(create_app(service=service)).get("/metrics").text
    assert f'{COUNTER}{{outcome="refused"}}' in metrics


def test_a_dead_lettered_webhook_is_logged_and_counted(settings: Settings,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    receiver = LogisticsReceiver(secret=SECRET).start()
    try:
        receiver.responses.extend([(500, {})] * 20)
        configured = settings.model_copy(update={"logistics_webhook_url": receiver.url + "?token=receiver-s3cret",
                                                 "logistics_webhook_secret": SecretStr(SECRET),
                                                 "logistics_allow_private": True})
        service = Service.create(configured)
        event_id = _emit(service)
        now = [system_clock() + timedelta(seconds=2)]
        dispatcher = Dispatcher(service.db, configured, clock=lambda: now[0])
        before_dead, before_retry = _count("dead"), _count("retry")
        with caplog.at_level(logging.INFO):
            for _ in range(12):
                asyncio.run(dispatcher.run_once_and_close())
                with service.db.read() as session:
                    row = session.exec(select(Outbox).where(Outbox.event_id == event_id)).one()
                now[0] = max(now[0], row.due_at) + timedelta(seconds=1)  # straight to the next try
        assert _status(service, event_id) == "dead"
        assert _count("dead") == before_dead + 1 and _count("retry") == before_retry + 9
        ours = [r.getMessage() for r in caplog.records if r.name.startswith(("bot", "integrations"))]
        assert any("dead-lettered" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert not [m for m in ours if "receiver-s3cret" in m]
    finally:
        receiver.stop()
