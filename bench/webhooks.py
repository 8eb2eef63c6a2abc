"""Benchmark the Twilio webhook path; prints ONE JSON object on stdout.

Starts `doorstep serve` (a real uvicorn, API + webhooks + dispatcher in one
process, SQLite unless DATABASE_URL is set; on PostgreSQL a throw-away
database created through it for the run) in a subprocess, pointed at the
fake Twilio of tests/fakes (real twilio client, loopback HTTP), and a bare
FastAPI endpoint that returns empty TwiML in another. Every inbound webhook
is a correctly signed SMS "where is my order" from a seeded customer with an
order; "handled" means its reply arrived at fake Twilio. Four measurements:

  * cpu: CPU ms of the `serve` process (utime + stime of /proc/<pid>/stat,
    every thread) per handled inbound message, in each phase below, and its
    idle CPU per second (dispatcher and recovery ticks) for reference;
  * paced: one message at a time (the next only after the reply arrived):
    ack and end-to-end latency with nothing queued;
  * open loop: fixed arrival rates (`--rates`, messages per second, each
    from a different customer) for `--seconds` each, whatever the server's
    speed: ack and end-to-end p50 / p99, the rate of replies actually kept;
  * ack vs bare: closed loop at `--concurrency` in flight, the same async
    client (httpx) posting to `serve` and then to the bare endpoint in the
    same run: requests/s of each and their ratio; then the same webhooks to
    `serve` again (all duplicates: the whole acknowledgement, no processing
    behind it), and, when `serve` exports them, the group commit's batch
    size, lock wait and commit time from its /metrics.

    .venv/bin/python bench/webhooks.py [--rates 25,50,100,150,200] [--seconds 4] [--paced 50]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/webhooks.py

Send rate limits are lifted for the run (TWILIO_SMS_RATE_PER_SECOND=10000):
with the default 1 message/s per SMS sender, end-to-end throughput is 1/s by
design. The client and fake Twilio share this (bench) process; `serve`'s CPU
is read from its own process only. Progress goes to stderr; only the JSON
goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pgtemp import throwaway_database  # noqa: E402
from tests.fakes.twilio_server import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS_FROM,
    FakeTwilio,
    free_port,
)

BARE_APP = '''
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/webhooks/twilio")
async def twilio(request: Request) -> Response:
    await request.body()
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response/>', media_type="application/xml")
'''

Form = tuple[dict[str, str], dict[str, str]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the servers a run started (killed if one does not stop within 15 s)."""
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def seed(database_url: str, phones: list[str]) -> None:
    from bot.core.schemas import OrderIn
    from bot.core.settings import Settings
    from bot.service import Service
    from bot.store.orders import upsert_order
    from tests.support.factories import order_payload

    service = Service.create(Settings(DATABASE_URL=database_url, DOORSTEP_CONFIG="none.yaml"))
    with service.db.session() as session:
        for i, phone in enumerate(phones):
            upsert_order(session=session, order_in=OrderIn.model_validate(
                order_payload(order_id=f"B{i:05d}", phone=phone, customer={"name": f"Bench {i}"})))
    service.db.dispose()


class Bench:
    def __init__(self, fake: FakeTwilio, public: str, bare: str, phones: list[str], pid: int) -> None:
        self.fake, self.public, self.bare, self.phones, self.pid = fake, public, bare, phones, pid
        self.sequence = 0
        self.reposted = 0

    def forms(self, count: int, base: str | None = None) -> list[Form]:
        out = []
        for i in range(count):
            self.sequence += 1
            out.append(self.fake.inbound(base or self.public, from_=self.phones[i % len(self.phones)],
                                         body="where is my order", sid=f"SMbench{self.sequence:08d}"))
        return out

    @staticmethod
    def client(connections: int) -> Any:
        import httpx

        return httpx.AsyncClient(limits=httpx.Limits(max_connections=connections,
                                                     max_keepalive_connections=connections), timeout=60)

    async def post(self, client: Any, url: str, form: Form) -> float:
        import httpx

        t0 = time.monotonic()
        try:
            response = await client.post(url, data=form[0], headers=form[1])
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A keep-alive connection the server closed as we reused it: post again, as Twilio
            # would (the MessageSid makes it a duplicate at most). Counted in the output.
            self.reposted += 1
            response = await client.post(url, data=form[0], headers=form[1])
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered {response.status_code}")
        return time.monotonic() - t0

    def replies_after(self, before: int, count: int, timeout: float = 300) -> list[dict[str, Any]]:
        return self.fake.wait_for(before + count, timeout=timeout)[before:before + count]

    def idle_cpu(self, seconds: float = 3.0) -> float:
        cpu0 = cpu_seconds(self.pid)
        time.sleep(seconds)
        return (cpu_seconds(self.pid) - cpu0) / seconds

    # ------------------------------------------------------------ phases

    def paced(self, count: int) -> dict[str, Any]:
        async def run() -> tuple[list[float], list[float]]:
            acks, e2e = [], []
            async with self.client(1) as client:
                for form in self.forms(count):
                    before = len(self.fake.messages)
                    t0 = time.monotonic()
                    acks.append(await self.post(client, self.public + "/webhooks/twilio", form))
                    while len(self.fake.messages) <= before:
                        await asyncio.sleep(0.0005)
                    e2e.append(self.fake.messages[before]["_monotonic"] - t0)
            return acks, e2e

        cpu0 = cpu_seconds(self.pid)
        acks, e2e = asyncio.run(run())
        cpu = cpu_seconds(self.pid) - cpu0
        return {"messages": count, "ack_p50_ms": ms(percentile(acks, 50)), "ack_p99_ms": ms(percentile(acks, 99)),
                "e2e_p50_ms": ms(percentile(e2e, 50)), "e2e_p99_ms": ms(percentile(e2e, 99)),
                "cpu_ms_per_message": round(cpu * 1000 / count, 2)}

    def open_loop(self, rate: float, seconds: float, *, urls: list[str] | None = None,
                  pids: list[int] | None = None) -> dict[str, Any]:
        """`rate` webhooks a second for `seconds`, whatever the server's speed (alternating over `urls`,
        the servers whose CPU is counted are `pids`; default: the one `serve`)."""
        count = max(1, int(rate * seconds))
        forms = self.forms(min(count, len(self.phones)))
        forms = (forms * (count // len(forms) + 1))[:count] if count > len(forms) else forms
        started: dict[str, float] = {}
        targets = [u + "/webhooks/twilio" for u in (urls or [self.public])]
        pids = pids or [self.pid]

        async def run() -> tuple[list[float], float]:
            acks: list[float] = []
            async with self.client(512) as client:
                t_start = time.monotonic()
                tasks = []
                for i, form in enumerate(forms):
                    delay = t_start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    started[form[0]["From"]] = time.monotonic()

                    async def one(f: Form = form, url: str = targets[i % len(targets)]) -> None:
                        acks.append(await self.post(client, url, f))
                    tasks.append(asyncio.ensure_future(one()))
                sent_in = time.monotonic() - t_start
                await asyncio.gather(*tasks)
                return acks, sent_in

        before = len(self.fake.messages)
        cpu0 = [cpu_seconds(pid) for pid in pids]
        acks, sent_in = asyncio.run(run())
        replies = self.replies_after(before, count)
        cpu = sum(cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True))
        e2e = [m["_monotonic"] - started[m["to"]] for m in replies if m["to"] in started]
        first = min(started.values())
        last = max(m["_monotonic"] for m in replies)
        return {"offered_per_s": rate, "messages": count, "arrivals_per_s": round(count / sent_in, 1),
                "replies_per_s": round(count / (last - first), 1),
                "ack_p50_ms": ms(percentile(acks, 50)), "ack_p99_ms": ms(percentile(acks, 99)),
                "e2e_p50_ms": ms(percentile(e2e, 50)), "e2e_p99_ms": ms(percentile(e2e, 99)),
                "cpu_ms_per_message": round(cpu * 1000 / count, 2)}

    def ack_metrics(self) -> dict[str, float]:
        """Sums and counts of the acknowledgement's histograms from `serve`'s /metrics (empty before they existed)."""
        import httpx

        wanted = ("doorstep_ack_batch_size", "doorstep_ack_lock_wait_seconds", "doorstep_ack_commit_seconds")
        out: dict[str, float] = {}
        for line in httpx.get(self.public + "/metrics", timeout=10).text.splitlines():
            name, _, value = line.partition(" ")
            if name.endswith(("_sum", "_count")) and name.rsplit("_", 1)[0] in wanted:
                out[name] = float(value)
        return out

    def ack_vs_bare(self, count: int, concurrency: int) -> dict[str, Any]:
        async def closed(url: str, forms: list[Form]) -> tuple[list[float], float]:
            acks: list[float] = []
            semaphore = asyncio.Semaphore(concurrency)
            async with self.client(concurrency) as client:
                async def one(form: Form) -> None:
                    async with semaphore:
                        acks.append(await self.post(client, url, form))
                t0 = time.monotonic()
                await asyncio.gather(*(one(f) for f in forms))
                return acks, time.monotonic() - t0

        before = len(self.fake.messages)
        metrics0 = self.ack_metrics()
        cpu0 = cpu_seconds(self.pid)
        forms = self.forms(count)
        acks, wall = asyncio.run(closed(self.public + "/webhooks/twilio", forms))
        metrics1 = self.ack_metrics()
        self.replies_after(before, count)
        cpu = cpu_seconds(self.pid) - cpu0
        group: dict[str, Any] = {}
        if metrics1:  # the group commit's figures while the acks ran (processing went on behind them)
            def delta(name: str) -> float:
                return metrics1.get(name, 0.0) - metrics0.get(name, 0.0)

            commits = delta("doorstep_ack_batch_size_count") or 1
            group = {"commits": int(commits),
                     "mean_batch": round(delta("doorstep_ack_batch_size_sum") / commits, 2),
                     "mean_lock_wait_ms": ms(delta("doorstep_ack_lock_wait_seconds_sum") / commits),
                     "mean_commit_ms": ms(delta("doorstep_ack_commit_seconds_sum") / commits)}
        bare_acks, bare_wall = asyncio.run(closed(self.bare + "/webhooks/twilio", self.forms(count, self.bare)))
        # The same webhooks again: every one a duplicate (the provider's retry), so the whole acknowledgement
        # runs (signature, parse, INSERT … ON CONFLICT DO NOTHING, group commit) and no processing follows.
        cpu1 = cpu_seconds(self.pid)
        dup_acks, dup_wall = asyncio.run(closed(self.public + "/webhooks/twilio", forms))
        dup_cpu = cpu_seconds(self.pid) - cpu1
        ack_rps, bare_rps, dup_rps = count / wall, count / bare_wall, count / dup_wall
        return {"concurrency": concurrency, "requests": count,
                "ack_per_s": round(ack_rps, 1), "ack_p50_ms": ms(percentile(acks, 50)),
                "ack_p99_ms": ms(percentile(acks, 99)),
                "bare_per_s": round(bare_rps, 1), "bare_p50_ms": ms(percentile(bare_acks, 50)),
                "bare_p99_ms": ms(percentile(bare_acks, 99)),
                "ack_vs_bare": round(ack_rps / bare_rps, 3),
                "cpu_ms_per_message": round(cpu * 1000 / count, 2), **({"group_commit": group} if group else {}),
                "duplicates_per_s": round(dup_rps, 1), "duplicates_p50_ms": ms(percentile(dup_acks, 50)),
                "duplicates_vs_bare": round(dup_rps / bare_rps, 3),
                "duplicates_cpu_ms_per_request": round(dup_cpu * 1000 / count, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced", type=int, default=50, help="messages sent one at a time")
    parser.add_argument("--rates", default="25,50,100,150,200", help="open-loop arrival rates (messages/s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each open-loop rate")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight for ack vs bare")
    parser.add_argument("--requests", type=int, default=300, help="requests for ack vs bare")
    args = parser.parse_args()
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    customers = max([args.requests, args.paced, *(int(r * args.seconds) for r in rates)])

    tmp = Path(tempfile.mkdtemp(prefix="doorstep-bench-"))
    given = os.environ.get("DATABASE_URL")
    if given and given.startswith("postgresql"):
        # A fresh database each run: the run's provider ids are numbered from 1, and a database that
        # holds an earlier run's would take every webhook for a duplicate.
        with throwaway_database(given) as database_url:
            run(args, rates, customers, tmp, database_url)
    else:
        run(args, rates, customers, tmp, given or f"sqlite:///{tmp / 'bench.db'}")


def run(args: argparse.Namespace, rates: list[float], customers: int, tmp: Path, database_url: str) -> None:
    fake = FakeTwilio().start()
    phones = [f"+91980{i:07d}" for i in range(customers)]
    log(f"seeding {len(phones)} customers with orders …")
    seed(database_url, phones)

    port, bare_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": database_url, "DOORSTEP_PUBLIC_URL": public,
           "DOORSTEP_API_KEY": "bench-api-key-0123456789abcdef", "DOORSTEP_CONFIG": str(tmp / "none.yaml"),
           "DOORSTEP_LOG_LEVEL": "WARNING", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_SMS_FROM": SMS_FROM, "TWILIO_API_BASE_URL": fake.url, "TWILIO_SMS_RATE_PER_SECOND": "10000",
           "TWILIO_STATUS_CALLBACKS": "false"}
    doorstep = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp / "bare_app.py").write_text(BARE_APP)
    bare = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port),
                             "--log-level", "warning"], cwd=tmp, env={**os.environ, "PYTHONPATH": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, Any] = {"benchmark": "webhooks", "database": database_url.split(":")[0],
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "load_average_before": load_average()}
    try:
        wait_ready(public + "/healthz", doorstep)
        wait_ready(f"http://127.0.0.1:{bare_port}/docs", bare)
        bench = Bench(fake, public, f"http://127.0.0.1:{bare_port}", phones, doorstep.pid)
        # Warm-up: load the intent model, open the provider connection, touch every customer once.
        log("warm-up …")
        bench.open_loop(50, len(phones) / 50)
        results["idle_cpu_ms_per_s"] = round(bench.idle_cpu() * 1000, 2)
        log(f"paced: {args.paced} one at a time …")
        results["paced"] = bench.paced(args.paced)
        results["open_loop"] = []
        for rate in rates:
            log(f"open loop: {rate:g}/s for {args.seconds:g} s …")
            results["open_loop"].append(bench.open_loop(rate, args.seconds))
        log(f"ack vs bare: {args.requests} at {args.concurrency} in flight …")
        results["ack_vs_bare"] = bench.ack_vs_bare(args.requests, args.concurrency)
        results["reposted_after_connection_error"] = bench.reposted
        results["load_average_after"] = load_average()
    finally:
        stop_processes([doorstep, bare])
        fake.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
