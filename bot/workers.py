"""Background work inside `doorstep serve` and `doorstep worker`.

The dispatcher drains the outbox; APScheduler (AsyncIOScheduler) ticks every
second for housekeeping: recovering inbound messages a crash left
unprocessed, and (journeys) promoting due scheduled rows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot import wiring
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service

log = logging.getLogger(__name__)

# Extra per-second jobs registered by other parts: callables taking the Service (sync, run in a thread).
TICK_JOBS: list[Any] = [lambda service: service.process_pending()]
TICK_JOBS.append(lambda service: service.journeys.run_due_timers())  # COD reminders/escalations, NPS surveys
TICK_JOBS.extend(wiring.TICK_JOBS)  # the integrations' own jobs


async def start_workers(service: Service, stop: asyncio.Event) -> list[asyncio.Task[Any]]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    wiring.install()
    dispatcher = Dispatcher(service.db, service.settings, clock=service.runtime.clock)
    scheduler = AsyncIOScheduler()

    async def tick() -> None:
        for job in TICK_JOBS:
            try:
                await asyncio.to_thread(job, service)
            except Exception:
                log.exception("scheduled job failed")

    scheduler.add_job(tick, "interval", seconds=1, max_instances=1, coalesce=True, id="doorstep-tick")
    scheduler.start()

    async def stop_scheduler() -> None:
        await stop.wait()
        scheduler.shutdown(wait=False)

    return [asyncio.create_task(dispatcher.run_forever(stop)), asyncio.create_task(stop_scheduler())]
