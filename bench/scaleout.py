"""Scale-out: one `doorstep serve` against two on one PostgreSQL; prints ONE JSON object on stdout.

Seeds customers with orders in a throw-away PostgreSQL database, then offers
the same open-loop load (`--rate` signed Twilio webhooks per second for
`--seconds`, each from a different customer) first to one `serve` process,
then to two (webhooks alternate between them; both run the dispatcher, which
shares the outbox through `FOR UPDATE SKIP LOCKED`). `replies_per_s` is the rate of
replies arriving at the fake Twilio; the figure the issue names is
`two_vs_one` = replies kept by two / by one at an offered rate above what one
keeps up with. Also reports every `serve`'s CPU ms per handled message and
the load average before and after.

The client and the fake Twilio run in this process: on a small machine they
compete with the servers for the same cores (read the load average).

    .venv/bin/python bench/scaleout.py [--rate 300] [--seconds 5]
    DOORSTEP_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python bench/scaleout.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhooks import Bench, load_average, log, seed, stop_processes, wait_ready  # noqa: E402

from bench.pgtemp import throwaway_database  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0, help="offered webhooks per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)

    fake = FakeTwilio().start()
    workdir = Path(tempfile.mkdtemp(prefix="doorstep-scaleout-"))
    # Each run needs its own customers (one message each): two warm-ups and two runs.
    phones = [f"+91970{i:07d}" for i in range(3 * count)]
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"benchmark": "scaleout", "database": "postgresql", "cpus": os.cpu_count(),
                               "load_average_before": load_average()}
    with throwaway_database(os.environ.get("DOORSTEP_BENCH_PG_URL", PG_DEFAULT)) as database_url:
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
            bench.open_loop(50, max(1.0, count / 2 / 50), urls=urls[:1], pids=[processes[0].pid])
            log(f"one serve: {args.rate:g}/s for {args.seconds:g} s …")
            one = bench.open_loop(args.rate, args.seconds, urls=urls[:1], pids=[processes[0].pid])
            processes.append(start_serve(database_url, public, ports[1], fake, workdir))
            wait_ready(urls[1] + "/healthz", processes[1])
            log("warm-up of the second server …")
            bench.open_loop(50, max(1.0, count / 2 / 50), urls=urls[1:], pids=[processes[1].pid])
            time.sleep(2)
            log(f"two serves: {args.rate:g}/s for {args.seconds:g} s …")
            two = bench.open_loop(args.rate, args.seconds, urls=urls, pids=[p.pid for p in processes])
            results.update(one=one, two=two, two_vs_one=round(two["replies_per_s"] / one["replies_per_s"], 2),
                           load_average_after=load_average())
        finally:
            stop_processes(processes)
            fake.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
