"""Provider limits hold across workers, and other processes' dispatchers wake on NOTIFY.

Three dispatcher processes (what three `doorstep worker` processes run) send through the real aiogram and twilio clients to
the fakes on loopback; the fakes count what arrives per sliding second (the
fake Telegram answers 429 over Telegram's limits). Runs on SQLite and
PostgreSQL; the LISTEN/NOTIFY tests on PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.core.db import Database
from bot.core.models import Customer, Outbox, RateLimit
from bot.core.settings import Settings
from bot.delivery import wakeup
from bot.delivery.dispatcher import Dispatcher
from bot.delivery.ratelimits import PRUNE_AFTER, Limit, RateLimiter
from bot.service import Service
from bot.store.outbox import enqueue_message
from tests.channels.conftest import new_service, with_channels
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.twilio_server import SMS_FROM, FakeTwilio

WORKERS = 3
ROOT = Path(__file__).resolve().parents[2]


def _customers(service: Service, count: int, channel: str, *, first_chat: int = 700_000, first_phone: int = 0) -> None:
    with service.db.session() as session:
        for i in range(count):
            customer = Customer(phone=f"+9198222{first_phone + i:05d}", telegram_chat_id=str(first_chat + i))
            session.add(customer)
            session.flush()
            assert enqueue_message(session=session, customer=customer, channel=channel, text=f"update {i}") is not None


def _sent_rows(service: Service) -> int:
    with service.db.read() as session:
        return len(session.exec(select(Outbox.id).where(Outbox.status == "sent")).all())


WORKER = """
import asyncio, signal, sys
from bot import wiring
from bot.core.db import Database
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher

wiring.install()
settings = Settings()
db = Database(settings.database_url)


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    poll = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    await Dispatcher(db, settings, worker_id=sys.argv[1]).run_forever(stop, idle_sleep=poll)


asyncio.run(main())
"""


def _env(settings: Settings) -> dict[str, str]:
    """The worker processes' environment: what `doorstep worker` would read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_", "DOORSTEP_"))}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=settings.database_url, DOORSTEP_ENV="test",
               DOORSTEP_STRICT_SESSIONS="1", DOORSTEP_CONFIG="does-not-exist.yaml",
               DOORSTEP_PUBLIC_URL=settings.public_url,
               TWILIO_SMS_RATE_PER_SECOND=str(settings.twilio_sms_rate),
               TWILIO_WHATSAPP_RATE_PER_SECOND=str(settings.twilio_whatsapp_rate))
    if settings.twilio_account_sid:
        env.update(TWILIO_ACCOUNT_SID=settings.twilio_account_sid,
                   TWILIO_AUTH_TOKEN=settings.twilio_auth_token.get_secret_value(),
                   TWILIO_SMS_FROM=settings.twilio_sms_from, TWILIO_WHATSAPP_FROM=settings.twilio_whatsapp_from,
                   TWILIO_API_BASE_URL=settings.twilio_api_base_url)
    if settings.telegram_bot_token.get_secret_value():
        env.update(TELEGRAM_BOT_TOKEN=settings.telegram_bot_token.get_secret_value(),
                   TELEGRAM_API_BASE_URL=settings.telegram_api_base_url)
    return env


def _run_workers(service: Service, expected: int, timeout: float) -> None:
    """WORKERS dispatcher processes (each its own engine and event loop) until `expected` rows are sent."""
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, f"worker-{n}"], env=_env(service.settings),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for n in range(WORKERS)]
    deadline = time.monotonic() + timeout
    try:
        while _sent_rows(service) < expected and time.monotonic() < deadline:
            assert all(worker.poll() is None for worker in workers), [w.stderr.read() for w in workers if w.stderr]
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert _sent_rows(service) == expected


def test_three_workers_keep_telegrams_limits(settings: Settings, fake_telegram: FakeTelegram) -> None:
    service = new_service(with_channels(settings, telegram=fake_telegram))
    _customers(service, 100, "telegram")
    _run_workers(service, 100, timeout=60)
    assert len(fake_telegram.sent) == 100  # each once
    assert fake_telegram.too_many == []  # never a 429
    assert fake_telegram.max_in_any_second() <= 30
    sent = sorted(m["_monotonic"] for m in fake_telegram.sent)
    assert sent[-1] - sent[0] < 8  # and not far below the limit: 100 messages at 27/s take ~3.7 s


def test_three_workers_keep_a_chats_limit(settings: Settings, fake_telegram: FakeTelegram) -> None:
    service = new_service(with_channels(settings, telegram=fake_telegram))
    with service.db.session() as session:
        customer = Customer(phone="+919822200001", telegram_chat_id="700001")
        session.add(customer)
        session.flush()
        for i in range(4):
            enqueue_message(session=session, customer=customer, channel="telegram", text=f"update {i}")
    _run_workers(service, 4, timeout=30)
    assert [m["text"] for m in fake_telegram.sent_to(700001)] == [f"update {i}" for i in range(4)]
    assert fake_telegram.too_many == []
    assert fake_telegram.max_in_any_second(700001) == 1


def test_three_workers_keep_a_twilio_senders_rate(settings: Settings, fake_twilio: FakeTwilio) -> None:
    rate = 10
    service = new_service(with_channels(settings, twilio=fake_twilio, twilio_sms_rate=float(rate)))
    _customers(service, 45, "sms")
    _run_workers(service, 45, timeout=60)
    assert len(fake_twilio.messages) == 45
    times = sorted(m["_monotonic"] for m in fake_twilio.messages)
    assert fake_twilio.max_in_any_second(SMS_FROM) <= rate, [round(t - times[0], 3) for t in times]


def test_slots_are_shared_between_databases_and_stale_keys_pruned(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    first.migrate()
    now = [1_000_000.0]
    limiters = [RateLimiter(db, clock=lambda: now[0], max_wait=10.5) for db in (first, second)]
    limit = [Limit("sms:+15005550006", 1.0)]
    slots = [slot.at for i in range(3) for slot in limiters[i % 2].reserve([limit, limit])]
    spacing = limit[0].spacing
    assert slots == pytest.approx([now[0] + k * spacing for k in range(6)])  # one sequence, no overlap
    assert [s.granted for s in limiters[0].reserve([limit] * 5)] == [True] * 4 + [False]  # within max_wait only
    later = [limiters[i % 2].reserve([limit])[0] for i in range(3)]
    assert not any(s.granted for s in later)  # asking without a slot reserves nothing: the key does not run away
    assert [s.at for s in later] == pytest.approx([now[0] + 10 * spacing] * 3)
    now[0] += 1000 + PRUNE_AFTER
    assert limiters[0].prune() == 1
    with first.read() as session:
        assert session.exec(select(RateLimit)).all() == []


# ---------------------------------------------------------------- waking other processes


def _listening(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = :q"),
            {"q": f"LISTEN {wakeup.CHANNEL}"}).scalar_one())


def _worker_in_thread(settings: Settings, idle_sleep: float) -> tuple[threading.Thread, asyncio.AbstractEventLoop,
                                                                       asyncio.Event]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    db = Database(settings.database_url)  # the worker's own engine: a process of its own would have one

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(Dispatcher(db, settings).run_forever(stop, idle_sleep=idle_sleep))
        finally:
            loop.close()
            db.dispose()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, loop, stop


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_worker_wakes_on_notify_without_waiting_for_its_poll(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """A `doorstep worker` (another process: its own dispatchers are not woken in-process) sends a
    row this process committed as soon as the NOTIFY arrives, not at its 30 s poll."""
    service = new_service(with_channels(settings, twilio=fake_twilio))
    worker = subprocess.Popen([sys.executable, "-c", WORKER, "listening-worker", "30"], env=_env(service.settings),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while _listening(service.db) == 0:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "the worker never LISTENed"
            time.sleep(0.05)
        for i in range(2):  # the first send also sets up the worker's Twilio client
            time.sleep(0.3)  # the worker is idle, waiting out its 30 s poll
            _customers(service, 1, "sms", first_chat=800_000 + i, first_phone=i)
            wakeup.announce(service.db)  # what `serve` does after a reply commits (dispatcher.notify(db))
            fake_twilio.wait_for(i + 1, timeout=10)  # long before the 30 s poll: the NOTIFY woke it
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_notify_connection_the_server_dropped_is_replaced(settings: Settings,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """NOTIFY goes through a connection kept for it: when the server drops that connection, the
    announcement that finds out is given up with a warning (the rows are committed; dispatchers poll)
    and the next one connects again and is heard."""
    import psycopg

    db = Database(settings.database_url)
    try:
        with psycopg.connect(db.conninfo, autocommit=True) as listener:
            listener.execute(f"LISTEN {wakeup.CHANNEL}")

            def heard() -> list[str]:
                return [n.payload for n in listener.notifies(timeout=1.0, stop_after=1)]

            wakeup.announce(db)
            assert heard() == [f"{os.getpid()}:{wakeup._ORIGIN}"]
            with db.engine.connect() as conn:  # the server ends every other session of this database
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                     "datname = current_database() AND pid NOT IN (pg_backend_pid(), :listener)"),
                             {"listener": listener.info.backend_pid})
            with caplog.at_level("WARNING", logger="bot.delivery.wakeup"):
                wakeup.announce(db)  # finds its connection dead: nothing raised to the committer
            assert "NOTIFY doorstep_outbox failed" in caplog.text
            wakeup.announce(db)
            assert heard() == [f"{os.getpid()}:{wakeup._ORIGIN}"]
    finally:
        db.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_without_listen_a_worker_polls(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio, listen_notify=False))
    thread, loop, stop = _worker_in_thread(service.settings, idle_sleep=0.5)
    try:
        time.sleep(0.5)
        assert _listening(service.db) == 0  # PgBouncer in transaction mode: no LISTEN at all
        _customers(service, 1, "sms")
        wakeup.announce(service.db)
        fake_twilio.wait_for(1, timeout=5)  # found by the poll
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def test_a_slot_reached_late_by_a_busy_loop_is_exchanged_not_lost(settings: Settings, fake_twilio: FakeTwilio) -> None:
    """The event loop is blocked for 300 ms while a batch waits for its slots (what many sends due
    at once do to a loaded loop): the slots it overslept are given up and fresh ones taken, so
    every message still goes out in this run, and none within a second of another beyond the rate."""
    rate = 10
    service = new_service(with_channels(settings, twilio=fake_twilio, twilio_sms_rate=float(rate)))
    _customers(service, 5, "sms")
    dispatcher = Dispatcher(service.db, service.settings, worker_id="busy")

    async def block_the_loop_after_the_first_send() -> None:
        while not fake_twilio.messages:
            await asyncio.sleep(0.001)
        time.sleep(0.3)  # blocking on purpose: the next slots (111 ms apart) pass while the loop is stuck

    async def run() -> int:
        try:
            blocker = asyncio.ensure_future(block_the_loop_after_the_first_send())
            sent = await dispatcher.run_once(limit=5)
            await blocker
            return sent
        finally:
            await dispatcher.aclose()

    assert asyncio.run(run()) == 5
    assert len(fake_twilio.messages) == 5 and _sent_rows(service) == 5
    assert fake_twilio.max_in_any_second(SMS_FROM) <= rate
