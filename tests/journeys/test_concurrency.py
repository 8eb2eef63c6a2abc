"""Two processes' worth of tickers on one database never fire a journey timer twice."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.core.models import JourneyTimer, Message
from bot.core.settings import Settings
from bot.service import Service
from tests.journeys.conftest import ist, make_kit


def test_two_tickers_fire_each_due_timer_once(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))
    with kit.client:
        for n in range(12):
            kit.post_order(order_id=f"C{n}", phone=f"+9198000000{n:02d}", payment_method="cod")
    kit.clock.set(ist(23, 12, 30))
    other = Service.create(settings, clock=kit.clock)  # a second worker process, on its own connection pool
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def tick(service: Service) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                service.journeys.run_due_timers(limit=5)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=tick, args=(s,)) for s in (kit.service, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with kit.service.db.session() as session:
        reminders = session.exec(select(Message).where(Message.template == "journey.cod_reminder")).all()
        assert len(reminders) == 12
        assert len({m.order_pk for m in reminders}) == 12
        fired = session.exec(select(JourneyTimer).where(JourneyTimer.kind == "cod_reminder")).all()
        assert {t.status for t in fired} == {"done"}
    other.db.dispose()
    kit.service.db.dispose()


def test_bad_quiet_hours_stop_the_service_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="DOORSTEP_QUIET_HOURS: '9pm' is not a quiet-hours range"):
        Service.create(settings.model_copy(update={"quiet_hours": "9pm"}))


def test_timers_wait_for_their_time(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))
    with kit.client:
        kit.post_order(payment_method="cod")
        kit.clock.advance(timedelta(hours=1, minutes=59))
        assert kit.service.journeys.run_due_timers() == 0
        kit.clock.advance(timedelta(minutes=1))
        assert kit.service.journeys.run_due_timers() == 1
    kit.service.db.dispose()
