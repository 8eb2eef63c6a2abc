"""In-process CPU of `serve`'s conversation work per message: `Service.process_messages` on batches.

The messages are stored first (as the webhooks' acknowledgement stores them: SMS "where is my order"
from seeded customers with an order, unidentified), then processed in batches of each `--sizes`
(identify + handle + commit, the reply and its outbox row queued), without HTTP and without the
dispatcher. Prints one JSON object per backend and batch size: CPU ms per message (this process's
CPU: on PostgreSQL the server's own is not in it), wall ms per batch, and statements per batch (every
cursor execution, counted with an engine event; PostgreSQL's COMMIT is not one). The garbage
collector is set as `serve` sets it once ready (`bot.app.freeze_startup_heap`).

    python bench/batch.py [--sizes 1,5,50] [--rounds 4] [--backend sqlite|postgres|both] [--profile FILE]
    python bench/batch.py --instructions [--sizes 1,50] [--rounds 1]

`--profile FILE` writes a cProfile of the measured batches (the smallest batch size only) to FILE.

`--instructions` counts instead of timing: the script runs itself under valgrind's callgrind, which
counts the instructions of the measured batches only (switched on and off around them with
`callgrind_control`), and reports `instructions_per_message` (millions). A count does not move with the
machine's load, so two versions of the code compare on a shared or noisy machine; it leaves out the
kernel (a statement's socket calls) and the database server. About a minute per backend.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callgrind import UNDER_CALLGRIND, counting, rerun_under_callgrind  # noqa: E402
from bench.pgtemp import throwaway_database  # noqa: E402
from bot.app import freeze_startup_heap  # noqa: E402
from bot.conversation import gateway  # noqa: E402
from bot.core.channels import InboundMessage  # noqa: E402
from bot.core.schemas import OrderIn  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.service import Service  # noqa: E402
from bot.store.orders import upsert_order  # noqa: E402
from tests.support.factories import order_payload  # noqa: E402

PG_ADMIN = os.environ.get("DOORSTEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _seed(service: Service, customers: int) -> list[str]:
    phones = [f"+91980{i:07d}" for i in range(customers)]
    with service.db.session() as session:
        for i, phone in enumerate(phones):
            upsert_order(session=session, order_in=OrderIn.model_validate(
                order_payload(order_id=f"B{i:05d}", phone=phone, customer={"name": f"Bench {i}"})))
    return phones


def _store(service: Service, phones: list[str]) -> list[int]:
    rows = [gateway.inbound_row(InboundMessage(channel="sms", text="where is my order", phone=phone,
                                               provider_message_id=f"SM{uuid.uuid4().hex}"), now=service.now())
            for phone in phones]
    with service.db.session() as session:
        ids = gateway.store_rows(session.connection(), rows)
    return [i for i in ids if i is not None]


def _measured(service: Service, ids: list[int]) -> None:
    """The measured call (a frame of its own, for a sampling profiler's filter)."""
    service.process_messages(ids)


def count_instructions(backend: str, url: str, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    """Per batch size: every batch's messages stored first, then the batches processed with
    callgrind counting, then a dump; instructions per message from the dump."""
    customers = max(sizes) * 2
    service = Service.create(Settings(DATABASE_URL=url, DOORSTEP_CONFIG="none.yaml"))
    phones = _seed(service, customers)
    for start in range(0, customers, 50):  # the model, and every customer's conversation (a running shop)
        service.process_messages(_store(service, phones[start:start + 50]))
    freeze_startup_heap()  # the collector as in `doorstep serve` and `doorstep worker` once ready
    results: list[dict[str, Any]] = []
    for size in sorted(sizes):
        batches = [_store(service, phones[start:start + size])
                   for round_ in range(rounds) for start in range(0, customers, size)
                   if (start // size) % 2 == round_ % 2]
        with counting() as counted:
            for ids in batches:
                _measured(service, ids)
        count = sum(len(ids) for ids in batches)
        results.append({"backend": backend, "batch": size, "messages": count,
                        "instructions_per_message": round(counted.total / count / 1e6, 3), "unit": "millions"})
    service.db.dispose()
    return results


def run(backend: str, url: str, sizes: list[int], rounds: int, profile: str | None) -> list[dict[str, Any]]:
    customers = max(sizes) * 2
    service = Service.create(Settings(DATABASE_URL=url, DOORSTEP_CONFIG="none.yaml"))
    phones = _seed(service, customers)
    statements = [0]

    @sa.event.listens_for(service.db.engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    # Warm-up: the model, every customer's conversation exists (the steady state of a running shop).
    for start in range(0, customers, 50):
        service.process_messages(_store(service, phones[start:start + 50]))
    freeze_startup_heap()  # the collector as in `doorstep serve` and `doorstep worker` once ready
    out = []
    for size in sorted(sizes):
        cpu = wall = 0.0
        count = batches = counted = 0
        profiler = cProfile.Profile() if profile and size == min(sizes) else None
        for round_ in range(rounds):
            for start in range(0, customers, size):
                if (start // size) % 2 != round_ % 2:
                    continue  # half the customers per round: every batch's customers wrote before
                ids = _store(service, phones[start:start + size])
                before = statements[0]
                c0, w0 = time.process_time(), time.perf_counter()
                if profiler:
                    profiler.enable()
                _measured(service, ids)
                if profiler:
                    profiler.disable()
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                count += len(ids)
                batches += 1
                counted += statements[0] - before
        if profiler and profile:
            profiler.dump_stats(profile)
        out.append({"backend": backend, "batch": size, "messages": count,
                    "cpu_ms_per_message": round(cpu * 1000 / count, 3),
                    "wall_ms_per_batch": round(wall * 1000 / batches, 2),
                    "statements_per_batch": round(counted / batches, 2)})
    service.db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,50")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind's callgrind instead of timing (see above)")
    args = parser.parse_args()
    if args.instructions and UNDER_CALLGRIND not in os.environ:
        sys.exit(rerun_under_callgrind())
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def measure(backend: str, url: str, profile: str | None) -> list[dict[str, Any]]:
        if args.instructions:
            return count_instructions(backend, url, sizes, args.rounds)
        return run(backend, url, sizes, args.rounds, profile)

    if args.backend in {"sqlite", "both"}:
        with tempfile.TemporaryDirectory() as tmp:
            for line in measure("sqlite", f"sqlite:///{tmp}/bench.db", args.profile):
                print(json.dumps(line), flush=True)
    if args.backend in {"postgres", "both"}:
        with throwaway_database(PG_ADMIN) as url:
            for line in measure("postgresql", url, args.profile and args.profile + ".pg"):
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
