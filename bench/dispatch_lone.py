"""CPU per message of the dispatcher at low rates: each reply claimed, sent and recorded alone.

Per backend (SQLite, PostgreSQL in a throw-away database), on a fresh database with
`--customers` customers: for each of `--messages` rounds (after `--warmup`), one SMS reply is
queued for the next customer (not measured), then `Dispatcher.run_once()` claims it (the only
due row; the claim's limit is the usual smallest batch), sends it with the real twilio client
to the fake Twilio of tests/fakes (loopback HTTP, in this process) and records it.

Thread CPU time (`time.thread_time`) per message of each part the dispatcher runs in
`asyncio.to_thread` (the claim, the rate-limit reservation, the recording), of the event
loop's thread (the send: the twilio client, the lanes), and the statements run per message.
Rate limits are lifted (TWILIO_SMS_RATE_PER_SECOND=1000000) but still reserved in the table.

One JSON object goes to stdout.

`--instructions` counts instead of timing (`bench/callgrind.py`): the script runs itself under
valgrind's callgrind, which counts the instructions of the measured rounds' `run_once` only (every
thread: the claim, reservation and record threads, the event loop, and the fake Twilio's own request
handling, the same work for every version of the code), and reports `instructions_per_message`
(millions). A count does not move with the machine's load.

    .venv/bin/python bench/dispatch_lone.py [--backend sqlite|postgres|both] [--messages 400]
    .venv/bin/python bench/dispatch_lone.py --backend sqlite --profile /tmp/lone   # cProfile of the threads' parts
    .venv/bin/python bench/dispatch_lone.py --instructions --messages 100         # callgrind's count
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.callgrind import UNDER_CALLGRIND, rerun_under_callgrind  # noqa: E402
from bench.callgrind import counting as callgrind_counting  # noqa: E402
from bench.pgtemp import throwaway_database  # noqa: E402
from bot import wiring  # noqa: E402
from bot.core.db import Database  # noqa: E402
from bot.core.models import Customer  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.delivery.dispatcher import Dispatcher  # noqa: E402
from bot.store.outbox import enqueue_message  # noqa: E402
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio  # noqa: E402

PG_ADMIN = os.environ.get("DOORSTEP_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PARTS = ("claim", "reserve", "record")


def run(backend: str, url: str, fake: FakeTwilio, customers: int, messages: int, warmup: int,
        profile: str | None, instructions: bool = False) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    wiring.install()
    settings = Settings(DATABASE_URL=url, DOORSTEP_ENV="test", DOORSTEP_CONFIG="none.yaml",
                        TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM=SMS_FROM,
                        TWILIO_API_BASE_URL=fake.url, TWILIO_SMS_RATE_PER_SECOND=1_000_000)
    with db.session() as session:
        people = [Customer(phone=f"+1555{i:07d}", name=f"c{i}") for i in range(customers)]
        session.add_all(people)
        session.flush()
        ids = [c.id for c in people]
    dispatcher = Dispatcher(db, settings, kinds=("message",))
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    profiler = cProfile.Profile() if profile else None
    measuring = [False]

    def timed(name: str, method: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            if profiler is not None and measuring[0]:
                profiler.enable()
            try:
                return method(*args, **kwargs)
            finally:
                if profiler is not None and measuring[0]:
                    profiler.disable()
                spent[name] += time.thread_time() - started
                calls[name] += 1
        return wrapped

    dispatcher.claim_once = timed("claim", dispatcher.claim_once)  # type: ignore[method-assign]
    dispatcher.record_many = timed("record", dispatcher.record_many)  # type: ignore[method-assign]
    dispatcher.limiter.reserve = timed("reserve", dispatcher.limiter.reserve)  # type: ignore[method-assign]
    statements = [0]
    counted_instructions = [0]
    counting = [False]  # only the dispatcher's statements (not the queueing of the next reply)

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        if counting[0]:
            statements[0] += 1

    def queue(index: int) -> None:
        with db.session() as session:
            customer = session.get(Customer, ids[index % len(ids)])
            assert customer is not None
            enqueue_message(session=session, customer=customer, channel="sms", text=f"Your order {index} is on its way")

    async def rounds() -> dict[str, Any]:
        loop_cpu = 0.0
        sent = 0
        for index in range(warmup + messages):
            await asyncio.to_thread(queue, index)
            if index == warmup:
                spent.clear()
                calls.clear()
                statements[0] = 0
                loop_cpu = 0.0
                measuring[0] = True
            started = time.thread_time()
            counting[0] = True
            if instructions and index >= warmup:
                with callgrind_counting() as counted:
                    sent += await dispatcher.run_once()
                counted_instructions[0] += counted.total
            else:
                sent += await dispatcher.run_once()
            counting[0] = False
            loop_cpu += time.thread_time() - started
        await dispatcher.aclose()
        return {"loop_cpu": loop_cpu, "sent": sent}

    before = os.getloadavg()
    wall = time.perf_counter()
    result = asyncio.run(rounds())
    wall = time.perf_counter() - wall
    if profiler is not None and profile:
        profiler.dump_stats(f"{profile}.{backend}.prof")
    db.dispose()
    if instructions:
        return {"backend": backend, "messages": messages, "sent_in_measured_rounds": result["sent"] - warmup,
                "instructions_per_message": round(counted_instructions[0] / messages / 1e6, 3), "unit": "millions",
                "statements_per_message": round(statements[0] / messages, 2)}
    per = {name: round(spent[name] / messages * 1000, 3) for name in PARTS}
    per["loop"] = round(result["loop_cpu"] / messages * 1000, 3)
    per["total"] = round(sum(per.values()), 3)
    return {"backend": backend, "messages": messages, "sent_in_measured_rounds": result["sent"] - warmup,
            "cpu_ms_per_message": per, "calls_per_message": {k: round(calls[k] / messages, 2) for k in PARTS},
            "statements_per_message": round(statements[0] / messages, 2),
            "wall_s": round(wall, 2), "loadavg_before": before, "loadavg_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--profile", help="write cProfile stats of the threaded parts to PROFILE.<backend>.prof")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind's callgrind instead of timing (see above)")
    args = parser.parse_args()
    if args.instructions and UNDER_CALLGRIND not in os.environ:
        sys.exit(rerun_under_callgrind())
    fake = FakeTwilio().start()
    results = []
    try:
        if args.backend in {"sqlite", "both"}:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run("sqlite", f"sqlite:///{tmp}/bench.db", fake, args.customers, args.messages,
                                   args.warmup, args.profile, args.instructions))
        if args.backend in {"postgres", "both"}:
            with throwaway_database(PG_ADMIN) as url:
                results.append(run("postgresql", url, fake, args.customers, args.messages, args.warmup, args.profile,
                                   args.instructions))
    finally:
        fake.stop()
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "results": results, "sqlite_version": __import__("sqlite3").sqlite_version,
                      "note": "instructions_per_message: callgrind's count of the measured rounds' run_once, every thread"
                      if args.instructions else
                      "cpu_ms_per_message: thread CPU time per message, mean over the measured rounds"}))


if __name__ == "__main__":
    main()
