"""kill -9 of a real `doorstep worker` in the middle of a claimed batch: after recovery every
message has gone out exactly once, in each customer's order.

The worker claims a batch, has many sends in flight (the fake Twilio answers after a random
delay) and records their outcomes in groups; it is killed once part of the batch has been
accepted by Twilio. What it leaves behind: rows recorded as sent, rows Twilio accepted whose
outcome was never committed, and rows Twilio never saw. A survivor reclaims the unfinished
rows one lease later, asks Twilio (reconciliation) instead of sending again, and sends the
rest. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from sqlmodel import col, select

from bot.core.models import Customer, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import LEASE, Dispatcher
from bot.store.outbox import enqueue_message
from tests.channels.conftest import Clock, new_service, with_channels
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support.server import DOORSTEP

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 80
TWICE = 10  # the first customers get a second message, which must follow their first


def _worker_env(settings: Settings, twilio: FakeTwilio) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_", "DATABASE_URL"))}
    env.update(DATABASE_URL=settings.database_url, DOORSTEP_ENV="test", DOORSTEP_CONFIG="does-not-exist.yaml",
               DOORSTEP_ALLOW_PRIVATE_URLS="true", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
               TWILIO_SMS_FROM=SMS_FROM, TWILIO_API_BASE_URL=twilio.url, TWILIO_SMS_RATE_PER_SECOND="1000",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def test_kill_9_mid_batch_loses_nothing_and_sends_nothing_twice(settings: Settings, fake_twilio: FakeTwilio,
                                                                tmp_path: Path) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    expected: list[str] = []
    with service.db.session() as session:
        customers = [Customer(phone=f"+9198777{i:05d}", name=f"C{i}") for i in range(CUSTOMERS)]
        session.add_all(customers)
        session.flush()
        for i, customer in enumerate(customers):
            for n in range(2 if i < TWICE else 1):
                text = f"customer {i} message {n}"
                enqueue_message(session=session, customer=customer, channel="sms", text=text)
                expected.append(text)
    fake_twilio.latency = (0.05, 1.5)  # many sends in flight at once, finishing one by one

    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([DOORSTEP, "worker"], env=_worker_env(service.settings, fake_twilio), cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(fake_twilio.messages) < CUSTOMERS // 4:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker sent nothing"
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)  # kill -9: no clean-up, no last commit
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
    time.sleep(1.6)  # the requests Twilio had in hand when the worker died are accepted all the same
    fake_twilio.latency = None

    with service.db.read() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message")).all()
        in_flight = {m.text for m in session.exec(select(Message).where(col(Message.id).in_(
            [r.message_id for r in rows if r.status == "sending"]))).all()}
    accepted = {m["body"] for m in fake_twilio.messages}
    assert in_flight & accepted, "the kill should catch messages Twilio accepted and the worker never recorded"
    assert 0 < len(accepted) < len(expected)

    clock = Clock()
    survivor = Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor")
    clock.advance(seconds=LEASE.total_seconds() + 1)  # the dead worker's leases have run out

    async def recover() -> None:
        try:
            for _ in range(20):
                if await survivor.run_once() == 0:
                    clock.advance(seconds=5)  # second messages wait for their first's outcome
                    if await survivor.run_once() == 0:
                        return
        finally:
            await survivor.aclose()

    asyncio.run(recover())

    bodies = [m["body"] for m in fake_twilio.messages]
    assert sorted(bodies) == sorted(expected)  # every message exactly once
    for i in range(TWICE):  # and each customer's in order
        assert bodies.index(f"customer {i} message 0") < bodies.index(f"customer {i} message 1")
    sids = {m["body"]: m["sid"] for m in fake_twilio.messages}
    with service.db.read() as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "message")).all()
        assert {r.status for r in rows} == {"sent"}
        messages = session.exec(select(Message).where(col(Message.direction) == "out")).all()
        assert {m.text: m.provider_message_id for m in messages} == sids  # each row has its own Twilio message
    assert any(r["method"] == "GET" for r in fake_twilio.requests), "the survivor asked Twilio before resending"
