"""Conversation tests: YAML files of customer turns, run through the real pipeline on a frozen clock.

Used by pytest (`tests/conversations/`) and by `doorstep test-conversations
PATH`, so a shop can write its own. Each file gets a fresh database; its
orders are created with the same domain functions as `POST /api/orders` and
`POST /api/orders/{id}/events`; every turn goes through the gateway (console
channel) exactly like `doorstep chat`. After each turn the runner checks the
intent, the reply pattern, the order fields (as `GET /api/orders/{id}` shows
them), the logistics events written by that turn, and whether it escalated.

The format is documented in docs/conversations.md. This module never
sends anything (nothing is dispatched) and never touches the network.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import col, select

from bot.core.channels import InboundMessage
from bot.core.db import Database
from bot.core.models import Conversation, Customer, LogisticsEvent
from bot.core.schemas import OrderEventIn, OrderIn
from bot.store.orders import get_order, order_public
from intents.errors import DoorstepError

DEFAULT_NOW = "2026-11-23T09:00:00+05:30"  # a Monday morning in the default shop timezone
TOP_KEYS = {"description", "now", "timezone", "config", "orders", "phone", "turns", "journeys", "locale_of_phone"}
TURN_KEYS = {"say", "media", "after", "intent", "reply", "no_reply", "order", "orders", "events", "escalated",
             "owner", "bot_opens", "max_chars"}
MAX_CHARS = 320


class ConversationFileError(DoorstepError, ValueError):
    """A conversation file that does not follow the format (names the file and the problem)."""


class FrozenClock:
    """The injectable clock: fixed, moved forward only by a turn's `after:`."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class TurnOutcome:
    say: str
    replies: list[str]
    intent: str | None
    problems: list[str] = field(default_factory=list)


@dataclass
class ConversationOutcome:
    path: str
    description: str
    turns: list[TurnOutcome] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(not t.problems for t in self.turns)


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")


def parse_after(value: Any) -> timedelta:
    match = _DURATION.match(str(value))
    if match is None:
        raise ConversationFileError(f"after: {value!r} is not a duration like 30m, 3h or 2d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def load_file(path: Path) -> dict[str, Any]:
    """Read and check one conversation file; raises ConversationFileError naming the problem."""
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConversationFileError(f"{path}: cannot read it as YAML ({exc.__class__.__name__})") from None
    if not isinstance(spec, dict):
        raise ConversationFileError(f"{path}: the top level must be a mapping")
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConversationFileError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    turns = spec.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConversationFileError(f"{path}: `turns` must be a non-empty list")
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not ({"say", "bot_opens"} & set(turn)):
            raise ConversationFileError(f"{path}: turn {i} needs `say:` (or `bot_opens:`)")
        if "say" in turn and not isinstance(turn["say"], str | int | float) or isinstance(turn.get("say"), bool):
            raise ConversationFileError(f'{path}: turn {i}: `say:` must be text (YAML reads yes/no as booleans: write say: "yes")')
        bad = set(turn) - TURN_KEYS
        if bad:
            raise ConversationFileError(f"{path}: turn {i} has unknown keys {sorted(bad)} (known: {sorted(TURN_KEYS)})")
    return spec


def discover(path: Path) -> list[Path]:
    """The conversation files at `path` (a file, or every *.yml / *.yaml below a folder)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def order_defaults(now: datetime, index: int) -> dict[str, Any]:
    return {
        "order_id": f"A{1001 + index}",
        "customer": {"name": "Asha Rao", "phone": "+919812345678", "locale": "en", "channel": "sms"},
        "items": [{"sku": "TS-M", "name": "T-shirt", "qty": 1, "price": "499.00"}],
        "currency": "INR",
        "total": "499.00",
        "payment_method": "prepaid",
        "shipping_address": {"line1": "12 MG Road", "line2": "", "landmark": "", "city": "Bengaluru",
                             "postal_code": "560001", "country": "IN"},
        "promised_date": (now.date() + timedelta(days=3)).isoformat(),
        "carrier": "Delhivery",
        "tracking_number": f"DL{100 + index}",
        "tracking_url": f"https://track.example.com/DL{100 + index}",
    }


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _compare(prefix: str, expected: Any, actual: Any) -> Iterator[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            yield from _compare(f"{prefix}.{key}", value, actual.get(key))
        return
    expected, actual = _plain(expected), _plain(actual)
    if isinstance(expected, int | float) and not isinstance(expected, bool) and isinstance(actual, str):
        actual = _to_number(actual)
    if expected != actual:
        yield f"{prefix}: expected {expected!r}, got {actual!r}"


def _to_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def run_conversation(path: Path, database_url: str, *, settings_overrides: dict[str, Any] | None = None,
                     spec: dict[str, Any] | None = None) -> ConversationOutcome:
    """Run one conversation file on a fresh database at `database_url` (its schema is migrated here)."""
    from bot.core.settings import Settings
    from bot.service import Service

    spec = spec or load_file(path)
    outcome = ConversationOutcome(path=str(path), description=str(spec.get("description", "")))
    now = datetime.fromisoformat(str(spec.get("now", DEFAULT_NOW)))
    if now.tzinfo is None:
        raise ConversationFileError(f"{path}: `now` needs a UTC offset, e.g. 2026-11-23T09:00:00+05:30")
    clock = FrozenClock(now.astimezone(UTC))
    settings = Settings(DATABASE_URL=database_url, DOORSTEP_TIMEZONE=str(spec.get("timezone", "Asia/Kolkata")),
                        DOORSTEP_CONFIG="does-not-exist.yaml", **(settings_overrides or {}))
    db = Database(database_url)
    try:
        service = Service.create(settings, db=db, clock=clock, shop_overrides=spec.get("config") or None)
        order_ids = _create_orders(service, spec, now, journeys=bool(spec.get("journeys", False)))
        phone = str(spec.get("phone") or _first_phone(spec, now))
        seen = _last_event_seq(db)
        for turn in spec["turns"]:
            if "after" in turn:
                clock.advance(parse_after(turn["after"]))
            if "bot_opens" in turn:
                result = _bot_opens(service, phone, turn["bot_opens"])
                outcome.turns.append(result)
                seen = _last_event_seq(db)
                continue
            inbound = InboundMessage(channel="console", text=str(turn["say"]), phone=phone,
                                     provider_message_id=f"convtest-{uuid.uuid4()}",
                                     media_urls=tuple(str(u) for u in turn.get("media", [])))
            handled = service.handle_inbound(inbound)
            replies = [m.text for m in handled.replies]
            intent = handled.turns[0].classification.intent.value if handled.turns and handled.turns[0].classification else None
            result = TurnOutcome(say=str(turn["say"]), replies=replies, intent=intent)
            result.problems.extend(_check_turn(turn, handled, replies, intent))
            result.problems.extend(_check_state(service, turn, order_ids, phone))
            new_events = _events_after(db, seen)
            seen = max([seen, *(e.seq or 0 for e in new_events)])
            result.problems.extend(_check_events(turn, new_events))
            outcome.turns.append(result)
    except ConversationFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
        outcome.error = f"{exc.__class__.__name__}: {exc}"
    finally:
        db.dispose()
    return outcome


def _first_phone(spec: dict[str, Any], now: datetime) -> str:
    orders = spec.get("orders") or []
    if orders:
        return str(_merged(order_defaults(now, 0), orders[0]).get("customer", {}).get("phone"))
    return "+919812345678"


def _create_orders(service: Any, spec: dict[str, Any], now: datetime, *, journeys: bool) -> list[str]:
    ids: list[str] = []
    for index, raw in enumerate(spec.get("orders") or []):
        raw = dict(raw)
        events = raw.pop("events", [])
        payload = _merged(order_defaults(now, index), _plain(raw))
        with service.db.session() as session:
            ids.append(service.save_order(session, OrderIn.model_validate(payload), journeys=journeys).order.order_id)
        for i, event in enumerate(events):
            body = {"type": event} if isinstance(event, str) else _plain(dict(event))
            body.setdefault("at", (now - timedelta(hours=len(events) - i)).isoformat())
            with service.db.session() as session:
                order = get_order(session=session, order_id=payload["order_id"])
                service.record_order_event(session, order, OrderEventIn.model_validate(body), journeys=journeys)
    return ids


def _bot_opens(service: Any, phone: str, spec: Any) -> TurnOutcome:
    """A proactive opening (what the journeys send): `bot_opens: {kind: cod_confirmation, order: A1002}`."""
    from bot.store.conversations import open_proactive
    from bot.store.orders import find_customer

    kind, order_id = str(spec["kind"]), str(spec["order"])
    with service.db.session() as session:
        customer = find_customer(session=session, phone=phone)
        if customer is None:
            raise ConversationFileError(f"bot_opens: no customer with phone {phone}")
        order = get_order(session=session, order_id=order_id)
        message = open_proactive(session=session, runtime=service.runtime, customer=customer, kind=kind,
                                 order=order)
        text = message.text if message is not None else ""
    return TurnOutcome(say=f"(bot opens {kind} for {order_id})", replies=[text] if text else [], intent=None)


def _check_turn(turn: dict[str, Any], handled: Any, replies: list[str], intent: str | None) -> Iterator[str]:
    if handled.duplicate:
        yield "the message was treated as a duplicate"
    if "intent" in turn and intent != str(turn["intent"]):
        yield f"intent: expected {turn['intent']!r}, got {intent!r}"
    joined = "\n".join(replies)
    patterns = turn.get("reply")
    for pattern in ([patterns] if isinstance(patterns, str) else patterns or []):
        if not re.search(str(pattern), joined, re.IGNORECASE | re.DOTALL):
            yield f"reply does not match /{pattern}/: {joined!r}"
    if turn.get("no_reply") and replies:
        yield f"expected no reply, got {joined!r}"
    if not turn.get("no_reply") and patterns is not None and not replies:
        yield "expected a reply, got none"
    limit = int(turn.get("max_chars", MAX_CHARS))
    for text in replies:
        if len(text) > limit:
            yield f"reply is {len(text)} characters (limit {limit}): {text!r}"
    if "escalated" in turn and bool(turn["escalated"]) != any(t.escalated for t in handled.turns):
        yield f"escalated: expected {bool(turn['escalated'])}"


def _check_state(service: Any, turn: dict[str, Any], order_ids: list[str], phone: str) -> Iterator[str]:
    expected: dict[str, Any] = {}
    if "order" in turn:
        if not order_ids:
            yield "order: this conversation has no orders"
            return
        expected[order_ids[0]] = turn["order"]
    expected.update(turn.get("orders") or {})
    with service.db.session() as session:
        for order_id, fields in expected.items():
            order = get_order(session=session, order_id=str(order_id))
            customer = session.get(Customer, order.customer_id)
            assert customer is not None
            actual = {**order_public(order, customer).model_dump(mode="json"), "extra": order.extra}
            for key, value in fields.items():
                if key not in actual:
                    yield f"order {order_id}: no field {key!r}"
                    continue
                yield from _compare(f"order {order_id} {key}", value, actual[key])
        if "owner" in turn:
            from bot.store.orders import find_customer

            customer = find_customer(session=session, phone=phone)
            conversation = session.exec(select(Conversation).where(Conversation.customer_id == (customer.id if customer else 0))).first()
            owner = conversation.owner if conversation else None
            if owner != turn["owner"]:
                yield f"owner: expected {turn['owner']!r}, got {owner!r}"


def _last_event_seq(db: Database) -> int:
    with db.session() as session:
        last = session.exec(select(LogisticsEvent.seq).order_by(col(LogisticsEvent.seq).desc())).first()
    return int(last or 0)


def _events_after(db: Database, seq: int) -> list[LogisticsEvent]:
    with db.session() as session:
        return list(session.exec(select(LogisticsEvent).where(col(LogisticsEvent.seq) > seq).order_by(col(LogisticsEvent.seq))))


def _check_events(turn: dict[str, Any], events: list[LogisticsEvent]) -> Iterator[str]:
    if "events" not in turn:
        return
    wanted = turn["events"] or []
    types = [e.type for e in events]
    want_types = [w if isinstance(w, str) else str(w.get("type")) for w in wanted]
    if types != want_types:
        yield f"events: expected {want_types}, got {types}"
        return
    for want, event in zip(wanted, events, strict=True):
        if isinstance(want, dict):
            yield from _compare(f"event {event.type} data", want.get("data", {}), event.data)
