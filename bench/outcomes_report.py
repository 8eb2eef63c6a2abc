"""Outcome report benchmark: how long `build_report` takes on a large shop, on SQLite and PostgreSQL.

Bulk-inserts N orders (default 100,000) spread over 12 weeks, half in the global holdout and a 10 %
"shipped" journey holdout, with their customers, ~4 carrier events, ~5 outbound and ~0.4 inbound
messages and 0.03 escalations per order, then times the whole report (every KPI, per arm and week,
the journey experiment and the reply rates) three times and keeps the best. The rows are made
directly (not through the service): this measures the report's queries, not the bot.

Progress goes to stderr; one JSON object goes to stdout.

    .venv/bin/python bench/outcomes_report.py                    # both backends, 100,000 orders
    .venv/bin/python bench/outcomes_report.py --backend sqlite --orders 20000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402

from bench.pgtemp import throwaway_database  # noqa: E402
from bot.core.db import Database  # noqa: E402
from bot.core.holdout import assign, encode_journeys  # noqa: E402
from bot.core.models import Customer, Escalation, Message, Order, OrderEvent  # noqa: E402
from bot.reports.outcomes import build_report  # noqa: E402

console = Console(stderr=True)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG: dict[str, Any] = {"holdout": {"share": 0.5, "journeys": {"shipped": 0.1}, "salt": "bench"},
                          "messaging": {"pricing": {"currency": "USD", "sms": {"IN": 0.002, "*": 0.008}}},
                          "outcomes": {"maturity": "14d", "minimum_effect": 0.2}}
# What the send planner records on each message; every tenth has none (queued before prices were recorded).
PLAN = {"channel": "sms", "form": "session", "category": "utility", "price": 0.002, "currency": "USD", "reason": ""}
JOURNEYS = ("order_confirmed", "shipped", "out_for_delivery", "delivered", "feedback")


def _rows(orders: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in ("customer", "orders", "order_event", "message", "escalation")}
    message_id = 0
    for i in range(orders):
        pk = i + 1
        created = START + timedelta(seconds=rng.uniform(0, 12 * 7 * 86400))
        assignment = assign(f"B{i:07d}", CONFIG)
        cod = rng.random() < 0.4
        returned = cod and rng.random() < 0.15
        failed = rng.random() < 0.1
        out["customer"].append({"id": pk, "phone": f"+9197{i:08d}", "name": "", "locale": "en", "channel": "sms",
                                "opted_out_channels": [], "created_at": created, "updated_at": created})
        out["orders"].append({
            "id": pk, "order_id": f"B{i:07d}", "customer_id": pk, "items": [], "currency": "INR", "total": 499,
            "payment_method": "cod" if cod else "prepaid", "shipping_address": {"country": "IN"}, "carrier": "",
            "tracking_number": "", "tracking_url": "", "status": "returned" if returned else "delivered",
            "cod_status": ("confirmed" if rng.random() < 0.7 else "pending") if cod else None, "address_status": "ok",
            "delivered_at": None if returned else created + timedelta(days=3), "extra": {}, "created_at": created,
            "updated_at": created, "holdout_group": assignment.group,
            "holdout_journeys": encode_journeys(assignment.journeys)})
        for day, kind in enumerate(("shipped", "out_for_delivery", *(("failed_attempt",) if failed else ()),
                                    "returned" if returned else "delivered")):
            at = created + timedelta(days=day + 1)
            out["order_event"].append({"order_pk": pk, "type": kind, "at": at, "note": "", "source": "api", "data": {},
                                       "dedupe_key": f"{kind}@{at.isoformat()}", "created_at": at})
        if assignment.group == "treatment":
            for step, journey in enumerate(JOURNEYS):
                message_id += 1
                at = created + timedelta(days=step)
                out["message"].append({"id": message_id, "customer_id": pk, "order_pk": pk, "direction": "out",
                                       "channel": "sms", "text": "", "media_urls": [], "status": "delivered",
                                       "entities": [], "template": f"journey.{journey}", "sent_at": at,
                                       "created_at": at, "plan": PLAN if message_id % 10 else None})
        if rng.random() < (0.2 if assignment.group == "treatment" else 0.35):
            for again in range(1 + (rng.random() < 0.2)):
                message_id += 1
                at = created + timedelta(days=2 + 2 * again, hours=3)
                out["message"].append({"id": message_id, "customer_id": pk, "direction": "in", "channel": "sms",
                                       "text": "", "media_urls": [], "status": "processed", "entities": [],
                                       "intent": "wismo", "created_at": at})
        if rng.random() < 0.03:
            at = created + timedelta(days=2)
            out["escalation"].append({"conversation_id": None, "customer_id": pk, "order_pk": pk, "reason": "customer_asked",
                                      "note": "", "status": "resolved", "context": {}, "created_at": at, "updated_at": at,
                                      "first_response_at": at + timedelta(minutes=rng.uniform(2, 90))})
    return out


def _fill(db: Database, rows: dict[str, list[dict[str, Any]]]) -> None:
    tables = {"customer": Customer, "orders": Order, "order_event": OrderEvent, "message": Message,
              "escalation": Escalation}
    with db.engine.begin() as conn:
        conversations = sa.table("conversation", sa.column("id"), sa.column("customer_id"), sa.column("channel"),
                                 sa.column("flow"), sa.column("state"), sa.column("slots"), sa.column("owner"),
                                 sa.column("misunderstandings"), sa.column("created_at"), sa.column("updated_at"))
        for name in ("customer", "orders", "order_event", "message", "escalation"):
            table = tables[name].__table__  # type: ignore[attr-defined]
            keys = sorted({key for row in rows[name] for key in row})
            batch = [{key: row.get(key) for key in keys} for row in rows[name]]  # executemany wants one shape
            if name == "escalation":
                ids = {r["customer_id"] for r in batch}
                conn.execute(conversations.insert(), [{"id": c, "customer_id": c, "channel": "sms", "flow": None,
                                                       "state": "", "slots": "{}", "owner": "bot",
                                                       "misunderstandings": 0, "created_at": START, "updated_at": START}
                                                      for c in sorted(ids)])
                batch = [{**r, "conversation_id": r["customer_id"]} for r in batch]
            for start in range(0, len(batch), 10_000):
                conn.execute(table.insert(), batch[start:start + 10_000])
        if db.engine.dialect.name == "postgresql":
            for name in ("customer", "orders", "message", "conversation"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"))
            conn.execute(sa.text("ANALYZE"))


def run(url: str, orders: int) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    started = time.perf_counter()
    rows = _rows(orders, random.Random(1))
    _fill(db, rows)
    console.print(f"{db.engine.dialect.name}: {orders:,} orders, {len(rows['message']):,} messages, "
                  f"{len(rows['order_event']):,} events inserted in {time.perf_counter() - started:.1f} s")
    now = START + timedelta(weeks=16)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        with db.read() as session:
            report = build_report(session, config=CONFIG, now=now)
        timings.append(time.perf_counter() - started)
    db.dispose()
    glob = report["experiments"][0]
    return {"orders": orders, "messages": len(rows["message"]), "events": len(rows["order_event"]),
            "report_seconds_best": round(min(timings), 3), "report_seconds_all": [round(t, 3) for t in timings],
            "experiments": len(report["experiments"]), "weeks": len(report["compared_weeks"]),
            "orders_compared": glob["orders"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    import os

    result: dict[str, Any] = {"benchmark": "outcomes_report"}
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            result["sqlite"] = run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.orders)
    if args.backend in ("postgres", "both"):
        with throwaway_database(os.environ.get("DOORSTEP_BENCH_PG_URL", PG_DEFAULT)) as url:
            result["postgres"] = run(url, args.orders)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
