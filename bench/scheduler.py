"""Scheduler benchmark: scheduled outbox rows on SQLite and PostgreSQL.

Measures, per backend, on a fresh database:
  * the time to bulk-insert N (default 1,000,000) scheduled message rows
    (future `due_at`, as journeys write them);
  * the latency of the dispatcher's real claim (`Dispatcher.claim`, 50 due
    rows, `FOR UPDATE SKIP LOCKED` on PostgreSQL) as the table grows;
  * the time to claim and dispatch M (default 10,000) due messages, one to
    each of M different customers, to a fake provider with 1 and with 2
    worker processes (`--workers`), and that no message was sent twice.

The fake provider is a minimal asyncio HTTP server in a process of its own
(tens of µs a request), so the figures are the dispatcher's, not the fake's.
The workers import, connect and warm up before the clock starts (a running
worker has long done that), then each reports its CPU per message and the
time spent claiming and recording. `--sender twilio` (default): the real
Twilio sender (twilio's async client) sends SMS rows to the fake; `--sender
aiohttp`: a bare pooled aiohttp POST, the dispatcher's own cost.

The scheduled rows belong to `--customers` (default 10,000) customers, the
due messages to the same customers, one each: the claim's per-customer order
check runs against a realistic number of siblings, not one customer's queue.

Progress goes to stderr (rich); one JSON object goes to stdout.

    .venv/bin/python bench/scheduler.py                      # both backends, 1,000,000 rows
    .venv/bin/python bench/scheduler.py --backend sqlite --rows 100000
    DOORSTEP_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python bench/scheduler.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: E402

from bot.core.db import Database  # noqa: E402
from bot.core.models import Customer, Message, Outbox  # noqa: E402

console = Console(stderr=True)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 10_000


# ---------------------------------------------------------------- fake provider

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-auth-token"


class _ProviderProtocol(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: cheap enough (tens of µs a request) that the benchmark
    measures the dispatcher, not its fake provider. POST: count the message (Twilio's form `Body`,
    or a JSON `id`) and answer like Twilio's Messages API; GET /counts: the counts; POST /reset."""

    counts: Counter[str] = Counter()
    created = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            self.answer(head.split(" ", 2), body)

    def answer(self, request_line: list[str], body: bytes) -> None:
        method, path = request_line[0], request_line[1]
        status = "201 Created"
        if method == "GET" and path.startswith("/counts"):
            reply = json.dumps(dict(self.counts)).encode()
            status = "200 OK"
        elif method == "POST" and path.startswith("/reset"):
            self.counts.clear()
            reply = b"{}"
            status = "200 OK"
        else:
            if body.startswith(b"{"):
                key = str(json.loads(body)["id"])
            else:
                from urllib.parse import parse_qs

                key = parse_qs(body.decode())["Body"][0]
            self.counts[key] += 1
            _ProviderProtocol.created += 1
            reply = (b'{"sid": "SM%032d", "status": "queued", "account_sid": "%s", "body": null}'
                     % (_ProviderProtocol.created, ACCOUNT_SID.encode()))
        self.transport.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (status.encode(), len(reply), reply))


def _serve_provider(port_out: Any) -> None:
    """The fake provider's own process (one event loop), so it never competes with the bench's GIL."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_ProviderProtocol, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


class _ProviderClient:
    """The bench's view of the fake provider (counts per message)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, trust_env=False, timeout=60)

    def reset(self) -> None:
        self.client.post("/reset").raise_for_status()

    def counts(self) -> Counter[str]:
        return Counter(self.client.get("/counts").json())


class HttpSender:
    """Posts each message to the fake provider over one pooled aiohttp session (as the real
    senders do: twilio's AsyncTwilioHttpClient and aiogram are aiohttp)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: Any = None

    async def send(self, message: Any) -> Any:
        import aiohttp

        from bot.core.channels import Receipt

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                                 timeout=aiohttp.ClientTimeout(total=10))
        async with self.session.post(self.url, json={"id": message.text, "to": message.to}) as response:
            response.raise_for_status()
            answer = await response.json()
        return Receipt(provider_id=answer["sid"])

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


def _worker(url: str, provider_url: str, worker_id: str, sender_kind: str, ready: Any, go: Any, done: Any,
            profile: str) -> None:
    """One dispatcher process: drain every due message, then exit. It imports, connects and warms
    its sender up first, then waits for `go`: the clock measures dispatching, not Python's start-up."""
    from bot.core.settings import Settings
    from bot.delivery.dispatcher import Dispatcher

    db = Database(url)
    settings = Settings(DATABASE_URL=url, DOORSTEP_ENV="test", TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_SMS_FROM="+15005550006", TWILIO_API_BASE_URL=provider_url,
                        TWILIO_SMS_RATE_PER_SECOND=1_000_000)
    senders: dict[str, Any] = {}
    if sender_kind == "aiohttp":
        senders["message:console"] = HttpSender(provider_url + "/send")
    else:
        from bot import wiring

        wiring.install()  # the real Twilio sender (twilio's aiohttp client) for "message:sms"

    timings: Counter[str] = Counter()

    def timed(name: str, method: Any) -> Any:
        def run(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args)
            finally:
                timings[name + "_s"] += time.perf_counter() - started
                timings[name + "_calls"] += 1
        return run

    async def main() -> int:
        dispatcher = Dispatcher(db, settings, senders=senders, worker_id=worker_id, kinds=("message",))
        # Where the time goes (the claim and the recording run in worker threads): timed from outside.
        for name, method in (("claim", "claim_once"), ("record_many", "record_many"), ("record", "record")):
            if hasattr(dispatcher, method):  # (record_many: not in older code the bench is run against)
                setattr(dispatcher, method, timed(name, getattr(dispatcher, method)))
        limiter = getattr(dispatcher, "limiter", None)
        if limiter is not None:  # rate-limit reservations (one per batch, more when slots are given up)
            limiter.reserve = timed("reserve", limiter.reserve)
        with db.read() as session:
            session.execute(sa.text("SELECT 1"))
        import twilio.rest  # noqa: F401  (what a running worker has long imported)

        from bot.app import freeze_startup_heap

        freeze_startup_heap()  # the garbage collector as `doorstep worker` sets it once ready
        ready.put(worker_id)
        await asyncio.to_thread(go.wait)
        cpu = time.process_time()
        total = 0
        idle = 0
        unsent = sa.text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
                         "AND dedupe_key LIKE 'due:%'")

        def left() -> int:  # due messages not sent yet (a put-back row is due again a moment later)
            with db.read() as session:
                return int(session.execute(unsent).scalar_one())

        while idle < 3:  # a few empty claims in a row, and nothing left to send (the other worker's are sent)
            count = await dispatcher.run_once(prefetch=True)  # as run_forever does
            total += count
            idle = idle + 1 if count == 0 else 0
            if count == 0:
                await asyncio.sleep(0.05)
                if idle == 3 and await asyncio.to_thread(left):
                    idle = 0
        await dispatcher.release_prefetched()
        await dispatcher.aclose()
        timings["cpu_s"] = time.process_time() - cpu  # this process's CPU (all threads) while dispatching
        return total

    if profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, main())
        profiler.dump_stats(f"{profile}.{worker_id}")
    else:
        result = asyncio.run(main())
    done.put((worker_id, {"claimed": result, **{k: round(v, 3) for k, v in timings.items()}}))
    db.dispose()


# ---------------------------------------------------------------- databases


def _fresh_database(backend: str, workdir: Path, pg_admin: str, keep: str = "") -> tuple[str, Any, bool]:
    """A throw-away database (dropped at the end), or with `keep` one that stays for the next run:
    the third value says whether it already holds the scheduled rows."""
    if backend == "sqlite":
        if keep:
            path = Path(keep).with_suffix(".db")
            return f"sqlite:///{path.resolve()}", lambda: None, path.exists()
        return f"sqlite:///{workdir / 'bench-scheduler.db'}", lambda: None, False
    name = keep or f"doorstep_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    if keep:
        admin.dispose()
        return url, lambda: None, bool(exists)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop, False


def _forget_earlier_runs(db: Database) -> None:
    """A kept database: remove what earlier runs dispatched (every row but the scheduled ones), and
    vacuum, so each run starts from the same table."""
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM outbox WHERE dedupe_key IS NULL OR dedupe_key NOT LIKE 'bench:%'"))
        conn.execute(sa.text("DELETE FROM message"))
        conn.execute(sa.text("DELETE FROM rate_limit"))
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE outbox"))
            conn.execute(sa.text("VACUUM ANALYZE message"))


def _customers(db: Database, count: int) -> list[int]:
    now = db.clock()
    with db.session() as session:
        session.execute(sa.insert(Customer.__table__), [{  # type: ignore[attr-defined]
            "phone": f"+9198{i:08d}", "name": f"Bench {i}", "channel": "sms", "locale": "en",
            "opted_out_channels": [], "created_at": now, "updated_at": now} for i in range(count)])
        table = Customer.__table__  # type: ignore[attr-defined]
        return [int(i) for i in session.execute(sa.select(table.c.id).order_by(table.c.id)).scalars()]


def _insert_scheduled(db: Database, customers: list[int], count: int, start: int, now: datetime, channel: str) -> None:
    """Bulk-insert future rows the fastest way each driver offers (COPY on PostgreSQL,
    executemany on SQLite), in the exact storage format of `UTCDateTime`."""
    rows = []
    for i in range(count):
        due = now + timedelta(minutes=random.randint(60 * 24, 60 * 24 * 30))  # never due during a run
        rows.append(("message", channel, "pending", 10 if i % 5 else 50, due, 0, 8, customers[(start + i) % len(customers)],
                     '{"journey": "shipped"}', f"bench:{start + i}", now, now, due))
    columns = ("kind, channel, status, priority, due_at, attempts, max_attempts, customer_id, payload, dedupe_key, "
               "created_at, updated_at, first_due_at")  # first_due_at: set as bot.store.outbox.enqueue_message sets it
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_postgres:
            with cursor.copy(f"COPY outbox ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        else:
            naive = [(*r[:4], r[4].replace(tzinfo=None).isoformat(sep=" "), *r[5:10],
                      r[10].replace(tzinfo=None).isoformat(sep=" "), r[11].replace(tzinfo=None).isoformat(sep=" "),
                      r[12].replace(tzinfo=None).isoformat(sep=" "))
                     for r in rows]
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(f"INSERT INTO outbox ({columns}) VALUES ({', '.join('?' * 13)})", naive)
        raw.commit()
    finally:
        raw.close()


def _insert_due(db: Database, customers: list[int], count: int, now: datetime, tag: str, channel: str = "console") -> None:
    """Due messages with their Message rows (what the dispatcher sends), one per customer in turn."""
    for offset in range(0, count, BATCH):
        size = min(BATCH, count - offset)
        with db.session() as session:
            messages = [Message(customer_id=customers[(offset + i) % len(customers)], direction="out", channel=channel,
                                text=f"bench {tag} {offset + i}",
                                status="queued", template="journey.shipped", due_at=now, created_at=now)
                        for i in range(size)]
            session.add_all(messages)
            session.flush()
            session.execute(sa.insert(Outbox.__table__), [{  # type: ignore[attr-defined]
                "kind": "message", "channel": channel, "status": "pending", "priority": 10, "due_at": now,
                "first_due_at": now,
                "attempts": 0, "max_attempts": 8, "message_id": m.id, "customer_id": m.customer_id,
                "payload": {"journey": "shipped"}, "dedupe_key": f"due:{tag}:{m.id}", "created_at": now,
                "updated_at": now} for m in messages])


def _claim_latency(db: Database, customers: list[int], repeats: int = 5) -> float:
    """Median ms of the dispatcher's own claim of 50 due rows."""
    from bot.core.settings import Settings
    from bot.delivery.dispatcher import Dispatcher

    dispatcher = Dispatcher(db, Settings(DATABASE_URL=db.url, DOORSTEP_ENV="test"), kinds=("message",))
    timings = []
    for _ in range(repeats):
        _insert_due(db, customers, 50, db.clock() - timedelta(seconds=1), f"claim{uuid.uuid4().hex[:6]}")
        started = time.perf_counter()
        claimed = dispatcher.claim(limit=50)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(claimed) == 50, len(claimed)
        with db.engine.begin() as conn:  # park them so they are not claimed again
            conn.execute(sa.update(Outbox.__table__).where(Outbox.__table__.c.status == "sending")  # type: ignore[attr-defined]
                         .values(status="sent"))
    return round(sorted(timings)[len(timings) // 2], 2)


def _dispatch(url: str, db: Database, customers: list[int], count: int, workers: int, provider_url: str,
              sender_kind: str, profile: str) -> dict[str, Any]:
    provider = _ProviderClient(provider_url)
    provider.reset()
    channel = "console" if sender_kind == "aiohttp" else "sms"
    _insert_due(db, customers, count, db.clock() - timedelta(seconds=1), f"w{workers}", channel)
    ctx = multiprocessing.get_context("spawn")
    done, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, provider_url, f"bench-{workers}-{i}", sender_kind, ready, go, done,
                                               profile))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=600)
    started = time.perf_counter()
    go.set()
    per_worker = dict(done.get(timeout=3600) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    received = provider.counts()
    cpu = sum(w.get("cpu_s", 0.0) for w in per_worker.values())
    sent = sum(received.values())
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    return {"workers": workers, "messages": count, "seconds": round(elapsed, 2),
            "per_second": round(count / elapsed, 1), "provider_received": sent, "sent_twice": duplicates,
            "worker_cpu_ms_per_message": round(cpu * 1000 / count, 3),
            "claimed_per_worker": per_worker}


def run_backend(backend: str, rows: int, dispatch: int, customer_count: int, pg_admin: str,
                provider_url: str, sender_kind: str, workers: tuple[int, ...], profile: str,
                keep: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        url, drop, filled = _fresh_database(backend, Path(tmp), pg_admin, keep)
        try:
            db = Database(url)
            if filled:  # a kept database from an earlier run: its scheduled rows and customers are there
                _forget_earlier_runs(db)
                table = Customer.__table__  # type: ignore[attr-defined]
                with db.read() as session:
                    customers = [int(i) for i in session.execute(sa.select(table.c.id).order_by(table.c.id)).scalars()]
                console.print(f"[bold]{backend}[/bold]: reusing {keep} ({len(customers):,} customers)")
                runs = [_dispatch(url, db, customers, dispatch, n, provider_url, sender_kind, profile) for n in workers]
                db.dispose()
                return {"customers": len(customers), "reused": keep, "dispatch": runs}
            db.migrate()
            customers = _customers(db, customer_count)
            checkpoints = sorted({c for c in (0, 10_000, 100_000, rows) if c <= rows})
            latency: list[dict[str, Any]] = [{"rows": 0, "claim_ms": _claim_latency(db, customers)}]
            inserted = 0
            insert_seconds = 0.0
            now = db.clock()
            with Progress(TextColumn(f"[bold]{backend}[/bold] insert"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
                task = progress.add_task("insert", total=rows)
                while inserted < rows:
                    size = min(BATCH, rows - inserted)
                    started = time.perf_counter()
                    _insert_scheduled(db, customers, size, inserted, now, "console" if sender_kind == "aiohttp" else "sms")
                    insert_seconds += time.perf_counter() - started
                    inserted += size
                    progress.update(task, completed=inserted)
                    if inserted in checkpoints[1:]:
                        latency.append({"rows": inserted, "claim_ms": _claim_latency(db, customers)})
            if db.is_postgres:
                with db.engine.begin() as conn:
                    conn.execute(sa.text("ANALYZE outbox"))
                latency.append({"rows": rows, "claim_ms": _claim_latency(db, customers), "after": "ANALYZE"})
            console.print(f"[bold]{backend}[/bold]: dispatching {dispatch:,} due messages with {workers} worker(s) …")
            runs = [_dispatch(url, db, customers, dispatch, n, provider_url, sender_kind, profile) for n in workers]
            db.dispose()
            return {"customers": customer_count, "insert": {"rows": rows, "seconds": round(insert_seconds, 2),
                               "rows_per_second": round(rows / insert_seconds) if insert_seconds else None,
                               "batch": BATCH},
                    "claim_latency": latency, "dispatch": runs}
        finally:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000, help="scheduled rows to insert")
    parser.add_argument("--dispatch", type=int, default=10_000, help="due messages to dispatch per run")
    parser.add_argument("--customers", type=int, default=10_000, help="customers the rows are spread over")
    parser.add_argument("--pg-url", default=os.environ.get("DOORSTEP_BENCH_PG_URL", PG_DEFAULT),
                        help="admin URL; a throw-away database is created and dropped")
    parser.add_argument("--sender", choices=("twilio", "aiohttp"), default="twilio",
                        help="twilio: the real Twilio sender (SMS rows) against the fake; aiohttp: a bare pooled POST")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--profile", default="", help="write each worker's cProfile stats to PREFIX.<worker>")
    parser.add_argument("--keep-db", default="", metavar="NAME",
                        help="keep the filled database (PostgreSQL: NAME; SQLite: NAME.db) and reuse it next time "
                             "instead of inserting the rows again (--rows and --customers then come from it)")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port_out = ctx.Queue()
    server = ctx.Process(target=_serve_provider, args=(port_out,), daemon=True)
    server.start()
    provider_url = f"http://127.0.0.1:{port_out.get(timeout=60)}"
    workers = tuple(int(n) for n in args.workers.split(","))
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    result: dict[str, Any] = {"benchmark": "scheduler", "python": platform.python_version(),
                              "machine": platform.machine(), "cpus": os.cpu_count(),
                              "load_average_before": [round(x, 2) for x in os.getloadavg()], "backends": {}}
    for backend in backends:
        try:
            result["backends"][backend] = run_backend(backend, args.rows, args.dispatch, args.customers, args.pg_url,
                                                       provider_url, args.sender, workers, args.profile, args.keep_db)
        except sa.exc.OperationalError as exc:
            console.print(f"[red]{backend} unavailable:[/red] {exc.__class__.__name__}")
            result["backends"][backend] = {"error": "database unavailable"}
    server.terminate()
    result["sender"] = args.sender
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
