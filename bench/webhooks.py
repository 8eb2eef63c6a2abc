"""Benchmark the Twilio webhook path; prints ONE JSON object on stdout.

Starts `doorstep serve` (a real uvicorn, API + webhooks + dispatcher in one
process, SQLite unless DATABASE_URL is set) in a subprocess, pointed at the
fake Twilio of tests/fakes (real twilio client, loopback HTTP). Then, at
rising concurrency, posts correctly signed inbound SMS webhooks ("where is my
order", one customer per in-flight request) and measures:

  * ack: webhook POST -> empty TwiML answer (p50, p99, requests/s);
  * end to end: webhook POST -> the bot's reply arriving at fake Twilio
    (p50, p99, replies/s);

and runs the same load against a bare FastAPI endpoint that returns empty
TwiML (the framework's ceiling on this machine), reporting the ratio.

    .venv/bin/python bench/webhooks.py [--levels 1,8,32] [--requests 100]

Send rate limits are lifted for the run (TWILIO_SMS_RATE_PER_SECOND=10000):
with the default 1 message/s per SMS sender, end-to-end throughput is 1/s by
design. Progress goes to stderr; only the JSON goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


async def load(url: str, forms: list[tuple[dict[str, str], dict[str, str]]], concurrency: int
               ) -> tuple[list[float], dict[str, float], float]:
    """POST every form with at most `concurrency` in flight; ack latencies, start times per phone, wall time."""
    import httpx

    acks: list[float] = []
    started: dict[str, float] = {}
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(form: dict[str, str], headers: dict[str, str]) -> None:
            async with semaphore:
                t0 = time.monotonic()
                started[form["From"]] = t0
                response = await client.post(url, data=form, headers=headers)
                acks.append(time.monotonic() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"webhook answered {response.status_code}")

        wall = time.monotonic()
        await asyncio.gather(*(one(form, headers) for form, headers in forms))
        return acks, started, time.monotonic() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=100, help="webhooks per level")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    per_level = args.requests

    fake = FakeTwilio().start()
    tmp = Path(tempfile.mkdtemp(prefix="doorstep-bench-"))
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
    phones = [f"+91980{i:07d}" for i in range(per_level)]
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
                               "requests_per_level": per_level, "levels": []}
    try:
        wait_ready(public + "/healthz", doorstep)
        wait_ready(f"http://127.0.0.1:{bare_port}/docs", bare)
        # Warm-up: load the intent model and open the provider connection.
        asyncio.run(load(public + "/webhooks/twilio", [fake.inbound(public, from_=phones[0], body="hi")], 1))
        fake.wait_for(1, timeout=60)
        sequence = 0
        for level in levels:
            log(f"concurrency {level} …")
            forms = []
            for phone in phones:
                sequence += 1
                forms.append(fake.inbound(public, from_=phone, body="where is my order", sid=f"SMbench{sequence:08d}"))
            before = len(fake.messages)
            acks, started, wall = asyncio.run(load(public + "/webhooks/twilio", forms, level))
            replies = fake.wait_for(before + len(forms), timeout=300)[before:]
            e2e = [m["_monotonic"] - started[m["to"]] for m in replies if m["to"] in started]
            first = min(started.values())
            last_reply = max(m["_monotonic"] for m in replies)
            bare_forms = [fake.inbound(f"http://127.0.0.1:{bare_port}", from_=p, body="where is my order") for p in phones]
            bare_acks, _, bare_wall = asyncio.run(load(f"http://127.0.0.1:{bare_port}/webhooks/twilio", bare_forms, level))
            ack_rps = len(acks) / wall
            bare_rps = len(bare_acks) / bare_wall
            results["levels"].append({
                "concurrency": level,
                "ack_p50_ms": ms(percentile(acks, 50)), "ack_p99_ms": ms(percentile(acks, 99)),
                "acks_per_s": round(ack_rps, 1),
                "e2e_p50_ms": ms(percentile(e2e, 50)), "e2e_p99_ms": ms(percentile(e2e, 99)),
                "replies_per_s": round(len(replies) / (last_reply - first), 1),
                "bare_ack_p50_ms": ms(percentile(bare_acks, 50)), "bare_ack_p99_ms": ms(percentile(bare_acks, 99)),
                "bare_per_s": round(bare_rps, 1),
                "ack_throughput_vs_bare": round(ack_rps / bare_rps, 3),
                "mean_ack_ms": ms(statistics.fmean(acks)),
            })
    finally:
        for process in (doorstep, bare):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        fake.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
