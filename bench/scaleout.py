"""Scale-out: one `doorstep serve` against two on one PostgreSQL; prints ONE JSON object on stdout.

Seeds customers with orders in a throw-away PostgreSQL database, then offers
the same open-loop load (`--rate` signed Twilio webhooks per second for
`--seconds`, each from a different customer) first to one `serve` process,
then to two (webhooks alternate between them; both run the dispatcher, which
shares the outbox through `FOR UPDATE SKIP LOCKED`). "Kept" is the rate of
replies arriving at the fake Twilio; the figure the issue names is
`two_vs_one` = kept by two / kept by one at an offered rate above what one
keeps up with. Also reports every `serve`'s CPU ms per handled message and
the load average before and after.

The client and the fake Twilio run in this process: on a small machine they
compete with the servers for the same cores (read the load average).

    .venv/bin/python bench/scaleout.py [--rate 300] [--seconds 5]
    DOORSTEP_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python bench/scaleout.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhooks import Bench, Form, cpu_seconds, load_average, log, ms, percentile, seed, wait_ready  # noqa: E402

from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio, free_port  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def start_serve(database_url: str, public: str, port: int, fake: FakeTwilio, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "DOORSTEP_PUBLIC_URL": public,
           "DOORSTEP_API_KEY": "bench-api-key-0123456789abcdef", "DOORSTEP_CONFIG": str(workdir / "none.yaml"),
           "DOORSTEP_LOG_LEVEL": "WARNING", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_SMS_FROM": SMS_FROM, "TWILIO_API_BASE_URL": fake.url, "TWILIO_SMS_RATE_PER_SECOND": "10000",
           "TWILIO_STATUS_CALLBACKS": "false"}
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def open_loop(bench: Bench, urls: list[str], pids: list[int], rate: float, seconds: float) -> dict[str, Any]:
    """`rate` webhooks a second for `seconds`, alternating over `urls`; replies kept per second."""
    count = max(1, int(rate * seconds))
    forms = bench.forms(count)
    started: dict[str, float] = {}

    async def run() -> tuple[list[float], float]:
        acks: list[float] = []
        async with bench.client(1024) as client:
            t_start = time.monotonic()
            tasks = []
            for i, form in enumerate(forms):
                delay = t_start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                started[form[0]["From"]] = time.monotonic()

                async def one(f: Form = form, url: str = urls[i % len(urls)]) -> None:
                    acks.append(await bench.post(client, url + "/webhooks/twilio", f))
                tasks.append(asyncio.ensure_future(one()))
            sent_in = time.monotonic() - t_start
            await asyncio.gather(*tasks)
            return acks, sent_in

    before = len(bench.fake.messages)
    cpu0 = [cpu_seconds(pid) for pid in pids]
    acks, sent_in = asyncio.run(run())
    replies = bench.replies_after(before, count, timeout=600)
    cpu = sum(cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True))
    e2e = [m["_monotonic"] - started[m["to"]] for m in replies if m["to"] in started]
    first, last = min(started.values()), max(m["_monotonic"] for m in replies)
    return {"serves": len(urls), "offered_per_s": rate, "messages": count,
            "arrivals_per_s": round(count / sent_in, 1), "kept_per_s": round(count / (last - first), 1),
            "ack_p99_ms": ms(percentile(acks, 99)), "e2e_p50_ms": ms(percentile(e2e, 50)),
            "e2e_p99_ms": ms(percentile(e2e, 99)), "cpu_ms_per_message": round(cpu * 1000 / count, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0, help="offered webhooks per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)

    admin_url = os.environ.get("DOORSTEP_BENCH_PG_URL", PG_DEFAULT)
    name = f"doorstep_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database_url = admin.url.set(database=name).render_as_string(hide_password=False)
    fake = FakeTwilio().start()
    workdir = Path(tempfile.mkdtemp(prefix="doorstep-scaleout-"))
    # Each run needs its own customers (one message each): two warm-ups and two runs.
    phones = [f"+91970{i:07d}" for i in range(3 * count)]
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"benchmark": "scaleout", "database": "postgresql", "cpus": os.cpu_count(),
                               "load_average_before": load_average()}
    try:
        log(f"seeding {len(phones)} customers with orders …")
        seed(database_url, phones)
        ports = [free_port(), free_port()]
        public = f"http://127.0.0.1:{ports[0]}"  # what Twilio signs; both servers are told the same URL
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        # One server alone first (the second is not running: its dispatcher would help the first).
        processes.append(start_serve(database_url, public, ports[0], fake, workdir))
        wait_ready(urls[0] + "/healthz", processes[0])
        bench = Bench(fake, public, public, phones, processes[0].pid)
        log("warm-up of the first server (model, connections) …")
        open_loop(bench, urls[:1], [processes[0].pid], 50, max(1.0, count / 2 / 50))
        log(f"one serve: {args.rate:g}/s for {args.seconds:g} s …")
        one = open_loop(bench, urls[:1], [processes[0].pid], args.rate, args.seconds)
        processes.append(start_serve(database_url, public, ports[1], fake, workdir))
        wait_ready(urls[1] + "/healthz", processes[1])
        log("warm-up of the second server …")
        open_loop(bench, urls[1:], [processes[1].pid], 50, max(1.0, count / 2 / 50))
        time.sleep(2)
        log(f"two serves: {args.rate:g}/s for {args.seconds:g} s …")
        two = open_loop(bench, urls, [p.pid for p in processes], args.rate, args.seconds)
        results.update(one=one, two=two, two_vs_one=round(two["kept_per_s"] / one["kept_per_s"], 2),
                       load_average_after=load_average())
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        fake.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
