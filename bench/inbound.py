"""Inbound throughput: N console messages through the full gateway, in-process.

Each message: dedupe, identify, lock the conversation, classify, run the flow,
write the reply to the outbox, commit. Prints one JSON object per backend:
{"backend", "messages", "per_second", "p50_ms", "p99_ms"}.

    python bench/inbound.py [--messages 500] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgtemp import throwaway_database  # noqa: E402
from bot.core.channels import InboundMessage  # noqa: E402
from bot.core.schemas import OrderIn  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.service import Service  # noqa: E402
from bot.store.orders import upsert_order  # noqa: E402

PG_ADMIN = os.environ.get("DOORSTEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEXTS = ["where is my order", "hi", "when will my parcel arrive?", "thanks!", "track my package pls", "order status"]
CUSTOMERS = 50


def _orders(service: Service) -> list[str]:
    phones = [f"+9198{i:08d}" for i in range(CUSTOMERS)]
    with service.db.session() as session:
        for i, phone in enumerate(phones):
            upsert_order(session=session, order_in=OrderIn.model_validate({
                "order_id": f"B{i:05d}", "customer": {"name": f"Bench {i}", "phone": phone},
                "items": [{"sku": "S", "name": "Socks", "qty": 1, "price": "99.00"}], "total": "99.00",
                "shipping_address": {"line1": "1 Bench Road", "city": "Pune", "postal_code": "411001"},
                "carrier": "Delhivery", "tracking_url": "https://t.example/1"}))
    return phones


def run(backend: str, url: str, messages: int) -> dict[str, object]:
    service = Service.create(Settings(DATABASE_URL=url, DOORSTEP_API_KEY="bench-key-0123456789abcdef",
                                      DOORSTEP_CONFIG="none.yaml"))
    phones = _orders(service)
    service.handle_inbound(InboundMessage(channel="console", text="warm up", phone=phones[0]))  # loads the model
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(messages):
        inbound = InboundMessage(channel="console", text=TEXTS[i % len(TEXTS)], phone=phones[i % len(phones)],
                                 provider_message_id=f"bench-{uuid.uuid4()}")
        t0 = time.perf_counter()
        service.handle_inbound(inbound)
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    service.db.dispose()
    latencies.sort()
    return {
        "backend": backend,
        "messages": messages,
        "per_second": round(messages / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    if args.backend in {"sqlite", "both"}:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run("sqlite", f"sqlite:///{tmp}/bench.db", args.messages)), flush=True)
    if args.backend in {"postgres", "both"}:
        with throwaway_database(PG_ADMIN) as url:
            print(json.dumps(run("postgresql", url, args.messages)), flush=True)


if __name__ == "__main__":
    main()
