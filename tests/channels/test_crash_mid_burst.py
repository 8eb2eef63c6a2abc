"""kill -9 of `doorstep serve` in the middle of a burst of webhooks, then a restart.

Conversation work runs in batches (several conversations in one transaction) and replies go out
in claimed batches: a crash in the middle of either must lose nothing that was acknowledged and
send nothing twice. Twilio redelivers a webhook that got no answer, and may deliver one twice:
the test does both. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlmodel import col, select

from bot.core.models import Message
from bot.core.settings import Settings
from tests.channels.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, SMS_FROM, add_order, new_service
from tests.fakes.twilio_server import FakeTwilio
from tests.support.server import DOORSTEP, free_port, wait_healthy

CUSTOMERS = 40


def _phone(i: int) -> str:
    return f"+9198765{i:05d}"


def _serve(settings: Settings, fake: FakeTwilio, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "DOORSTEP_API_KEY": settings.api_key.get_secret_value(),
           "DOORSTEP_CONFIG": settings.config_path, "DOORSTEP_TIMEZONE": settings.timezone, "DOORSTEP_ENV": "test",
           "DOORSTEP_PUBLIC_URL": PUBLIC_URL, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_SMS_FROM": SMS_FROM, "TWILIO_API_BASE_URL": fake.url, "TWILIO_SMS_RATE_PER_SECOND": "1000"}
    proc = subprocess.Popen([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{port}", timeout=60, proc=proc)
    return proc


def _post(url: str, fake: FakeTwilio, i: int) -> int:
    form, headers = fake.inbound(PUBLIC_URL, from_=_phone(i), body="where is my order", sid=f"SMburst{i:05d}")
    try:
        return httpx.post(url + "/webhooks/twilio", data=form, headers=headers, timeout=10).status_code
    except httpx.HTTPError:
        return 0  # no answer: Twilio will deliver it again


def test_kill_9_mid_burst_loses_nothing_acknowledged_and_sends_nothing_twice(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = new_service(settings)
    for i in range(CUSTOMERS):
        add_order(service, order_id=f"K{i:04d}", phone=_phone(i), customer={"name": f"Kim {i}"})

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(settings, fake_twilio, port)
    answered: dict[int, int] = {}
    killed = threading.Event()
    lock = threading.Lock()

    def fire(i: int) -> None:
        code = _post(url, fake_twilio, i)
        with lock:
            answered[i] = code
            enough = sum(1 for c in answered.values() if c == 200) >= CUSTOMERS // 3
            if enough and not killed.is_set():
                killed.set()
                proc.send_signal(signal.SIGKILL)  # mid-burst: acks, batches and sends in flight

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fire, range(CUSTOMERS)))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert killed.is_set()
    acknowledged = {i for i, code in answered.items() if code == 200}
    assert 0 < len(acknowledged) < CUSTOMERS  # the crash really came mid-burst

    proc = _serve(settings, fake_twilio, port)
    try:
        # Twilio's redelivery: every webhook again, answered or not (the answered ones are duplicates).
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(lambda i: _post(url, fake_twilio, i), range(CUSTOMERS))) == {200}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(fake_twilio.sent_to(_phone(i)) for i in range(CUSTOMERS)):
            time.sleep(0.1)
        time.sleep(1.0)  # anything sent twice would arrive now
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    sends = Counter(message["to"] for message in fake_twilio.messages)
    assert {_phone(i): 1 for i in range(CUSTOMERS)} == dict(sends), "each customer answered exactly once"
    for i in range(CUSTOMERS):
        assert f"K{i:04d}" in fake_twilio.sent_to(_phone(i))[0]["body"]
    with service.db.session() as session:
        inbound = session.exec(select(Message.provider_message_id, Message.status).where(
            Message.direction == "in", col(Message.provider_message_id).startswith("SMburst"))).all()
        assert len(inbound) == CUSTOMERS and {status for _, status in inbound} == {"processed"}
        replies = session.exec(select(Message.customer_id).where(Message.direction == "out",
                                                                 Message.status != "cancelled")).all()
        assert len(replies) == CUSTOMERS
