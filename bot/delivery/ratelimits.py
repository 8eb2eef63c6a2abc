"""Provider rate limits, shared by every process on one database.

Each limit is a key with a spacing between slots: a Twilio sender
(`TWILIO_SMS_RATE_PER_SECOND`, `TWILIO_WHATSAPP_RATE_PER_SECOND` per From
number), Telegram bot-wide (30/s) and per chat (1/s), and a WhatsApp
recipient's pacing (the pair rate: one message per 6 s, bursts of 10). The
`rate_limit` table holds, per key, when its next slot begins (`next_at`,
epoch seconds by the wall clock). Reserving slots is one atomic upsert for
several keys and several messages at once:

    INSERT INTO rate_limit … VALUES (…), (…)
    ON CONFLICT (key) DO UPDATE SET next_at = greatest(rate_limit.next_at, <floor>) + <granted> * spacing
    RETURNING key, next_at, granted

so N workers on one database together keep each provider limit, and a worker
pays one round trip per batch of messages, not one per send. `granted` caps
the reservation at the slots that begin within `max_wait` (the dispatcher's
MAX_INLINE_WAIT): a message without a slot in time is put back (deferred),
and reserves nothing, so deferrals never push the key into the future.

A message with a recipient key (a Telegram chat, a WhatsApp number) takes two
statements: the recipients' slots first, then the shared key (bot-wide, the
sender) with each message's recipient slot as its floor, so one send time
satisfies both. If the shared key puts a message later than its recipient
slot, the recipient's `next_at` is moved on after it (a third statement, only
then). The dispatcher's `acquire` gathers the requests its lanes make in the
same event-loop turn into one reservation.

Safety margin: every key is spaced at (1 - SAFETY_MARGIN) of the provider's
rate (Telegram bot-wide 27/s, not 30/s; a chat every 1.11 s). A message is
sent at its slot and may reach the provider up to D later (event-loop delay,
connection setup, network); the most messages in any one second at the
provider are then floor(rate × (1 - m) × (1 + D)) + 1, which stays within the
rate for D < m / (1 - m) = 111 ms. A send that would start more than
LATE_TOLERANCE after its slot (a busy event loop) gives that slot up and takes
a fresh one, the key having moved on past it; only after `max_wait` of that is
it put back. A send the provider answers later than a recipient's spacing
allows moves that recipient's next slot on.

Clocks: slots are wall-clock times (`time.time()`), so processes on several
machines need synchronised clocks (NTP keeps them within a few ms, well inside
the margin). A row whose `next_at` has passed limits nothing; rows more than
PRUNE_AFTER in the past are deleted (per-chat keys would otherwise grow
forever). Per-recipient keys hold a hash, never a chat id or phone number.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bot.core.db import Database
from bot.core.settings import Settings

log = logging.getLogger(__name__)

TELEGRAM_GLOBAL_RATE = 30.0
TELEGRAM_PER_CHAT_RATE = 1.0
WHATSAPP_PAIR_RATE = 1.0 / 6.0  # WhatsApp's pair rate: about one message every 6 s to one person…
WHATSAPP_PAIR_BURST = 10  # …after a short burst (WhatsApp allows more; we stay well inside it)
SAFETY_MARGIN = 0.1  # keys are spaced at 90 % of the provider's rate (module docstring)
LATE_TOLERANCE = 0.05  # a send starting later than this after its slot gives the slot up (and takes another)
PRUNE_EVERY = 60.0
PRUNE_AFTER = 60.0  # seconds a key's next_at may lie in the past before its row is deleted
DEFAULT_MAX_WAIT = 2.0


@dataclass(frozen=True)
class Limit:
    key: str
    rate: float  # the provider's messages per second for this key
    burst: int = 1  # slots that may be taken at once before the spacing applies
    recipient: bool = False  # one recipient's pacing: reserved first, the floor for the shared keys

    @property
    def spacing(self) -> float:
        return 1.0 / (self.rate * (1.0 - SAFETY_MARGIN))


@dataclass
class Slot:
    """A reservation for one message: send at `at` (wall clock), or, not granted, try again about then."""

    granted: bool
    at: float
    limits: list[Limit] = field(default_factory=list)
    recipient_next: dict[str, float] = field(default_factory=dict)  # key -> its next_at after this message

    def late(self, now: float) -> bool:
        return self.granted and now - self.at > LATE_TOLERANCE


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def channel_limits(settings: Settings, channel: str | None, to: str) -> list[Limit]:
    twilio = settings.twilio
    if channel == "telegram":
        return [Limit("telegram", TELEGRAM_GLOBAL_RATE),
                Limit(f"telegram:chat:{_digest(to)}", TELEGRAM_PER_CHAT_RATE, recipient=True)]
    if channel == "sms":
        return [Limit(f"sms:{twilio.sms_from}"[:100], twilio.sms_rate_per_second)]
    if channel == "whatsapp":
        return [Limit(f"whatsapp:{twilio.whatsapp_from}"[:100], twilio.whatsapp_rate_per_second),
                Limit(f"whatsapp:to:{_digest(to)}", WHATSAPP_PAIR_RATE, burst=WHATSAPP_PAIR_BURST, recipient=True)]
    return []


@dataclass
class _Ask:
    """What one statement asks of one key: `count` slots, none before `floor`."""

    limit: Limit
    floor: float
    count: int
    members: list[int]  # request indexes, in slot order


class RateLimiter:
    """Slots from the `rate_limit` table (see the module docstring); one per Dispatcher."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time,
                 max_wait: float = DEFAULT_MAX_WAIT) -> None:
        self.db = db
        self.clock = clock
        self.max_wait = max_wait
        self._queue: list[tuple[list[Limit], asyncio.Future[Slot]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._pruned_at = 0.0

    # ------------------------------------------------------------ async side (the dispatcher's lanes)

    async def acquire(self, limits: list[Limit]) -> Slot:
        """A slot for one message; the requests made in the same event-loop turn share one reservation."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Slot] = loop.create_future()
        self._queue.append((limits, future))
        if len(self._queue) == 1:
            task = loop.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the other lanes of this batch ask in this turn
        batch, self._queue = self._queue, []
        requests = [limits for limits, _ in batch]
        try:
            slots = await asyncio.to_thread(self.db.retry_on_disconnect, lambda: self.reserve(requests),
                                            what="rate-limit reservation")
        except Exception:
            log.exception("rate-limit reservation failed; putting %d message(s) back", len(batch))
            later = self.clock() + 1.0
            slots = [Slot(False, later, limits) for limits in requests]
        for (_, future), slot in zip(batch, slots, strict=True):
            if not future.done():
                future.set_result(slot)

    async def finished(self, slot: Slot) -> None:
        """The provider answered: a recipient's next slot is not less than its spacing after now
        (a slow request must not let the next one arrive too soon after it). Writes only then."""
        if not slot.granted or not slot.recipient_next:
            return
        now = self.clock()
        pushed = [(limit.key, now + 1.0 / limit.rate) for limit in slot.limits
                  if limit.recipient and slot.recipient_next.get(limit.key, now) < now + 1.0 / limit.rate]
        if pushed:
            try:
                await asyncio.to_thread(self._push, pushed)
            except Exception:
                log.warning("moving a recipient's rate limit on failed", exc_info=True)

    # ------------------------------------------------------------ the statements (sync, in a thread)

    def reserve(self, requests: list[list[Limit]]) -> list[Slot]:
        """One slot per request (a message's limits), or a time to try again: see the module docstring."""
        now = self.clock()
        deadline = now + self.max_wait
        slots = [Slot(True, now, list(limits)) for limits in requests]
        floors = [now] * len(requests)

        # 1. Recipients: each message's earliest time.
        asks: dict[str, _Ask] = {}
        for index, limits in enumerate(requests):
            for limit in limits:
                if limit.recipient:
                    ask = asks.setdefault(limit.key, _Ask(limit, now, 0, []))
                    ask.count += 1
                    ask.members.append(index)
        for ask, (next_at, granted) in self._take(list(asks.values()), deadline):
            spacing, base = ask.limit.spacing, next_at - granted * ask.limit.spacing
            first = base - (ask.limit.burst - 1) * spacing
            for position, index in enumerate(ask.members):
                at = max(now, first + position * spacing)
                if position < granted:
                    floors[index] = max(floors[index], at)
                    slots[index].recipient_next[ask.limit.key] = base + (position + 1) * spacing
                else:
                    slots[index].granted = False
                    slots[index].at = max(slots[index].at, at)

        # 2. The shared keys (bot-wide, the sender), no slot before a message's recipient slot.
        asks = {}
        for index, limits in enumerate(requests):
            if not slots[index].granted:
                continue
            for limit in limits:
                if not limit.recipient:
                    asks.setdefault(limit.key, _Ask(limit, now, 0, [])).members.append(index)
        for ask in asks.values():
            ask.members.sort(key=lambda index: floors[index])
            ask.count = len(ask.members)
            # Contiguous slots from `floor` put every message at or after its own floor.
            ask.floor = max([now, *(floors[index] - position * ask.limit.spacing
                                    for position, index in enumerate(ask.members))])
        for ask, (next_at, granted) in self._take(list(asks.values()), deadline):
            base = next_at - granted * ask.limit.spacing
            for position, index in enumerate(ask.members):
                at = base + position * ask.limit.spacing
                if position >= granted:
                    slots[index].granted = False
                slots[index].at = max(slots[index].at, floors[index], at)

        # 3. A message the shared key put later than its recipient slot: the recipient's next slot follows it.
        pushed: dict[str, float] = {}
        for index, slot in enumerate(slots):
            if slot.granted and slot.at > floors[index]:
                for limit in slot.limits:
                    if limit.recipient:
                        slot.recipient_next[limit.key] = slot.at + limit.spacing
                        pushed[limit.key] = max(pushed.get(limit.key, 0.0), slot.at + limit.spacing)
        if pushed:
            self._push(list(pushed.items()))
        if now - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = now
            self.prune(now)
        return slots

    def _take(self, asks: list[_Ask], deadline: float) -> list[tuple[_Ask, tuple[float, int]]]:
        """One upsert for all `asks`: each key's new next_at and how many slots it granted."""
        if not asks:
            return []
        asks = sorted(asks, key=lambda ask: ask.limit.key)  # one lock order: no deadlock between workers
        params: dict[str, Any] = {"deadline": deadline}
        for i, ask in enumerate(asks):
            spacing, burst = ask.limit.spacing, ask.limit.burst
            first = ask.floor - (burst - 1) * spacing
            fits = 0 if first > deadline else int((deadline - first) // spacing) + 1
            granted = min(ask.count, fits)
            params.update({f"k{i}": ask.limit.key, f"n{i}": ask.floor + granted * spacing, f"s{i}": spacing,
                           f"b{i}": burst, f"g{i}": granted})
        rows = self._execute(_upsert(self.db.is_postgres, len(asks)), params)
        got = {str(key): (float(next_at), int(granted)) for key, next_at, granted in rows}
        return [(ask, got[ask.limit.key]) for ask in asks]

    def _push(self, pushed: list[tuple[str, float]]) -> None:
        with self._connect() as conn:
            conn.execute(_PUSH[self.db.is_postgres], [{"key": key, "at": at} for key, at in sorted(pushed)])
            conn.commit()

    def prune(self, now: float | None = None) -> int:
        """Delete keys that limit nothing any more (their next slot is long past)."""
        cutoff = (now if now is not None else self.clock()) - PRUNE_AFTER
        with self._connect() as conn:
            deleted = conn.execute(_PRUNE, {"cutoff": cutoff})
            conn.commit()
        return int(deleted.rowcount or 0)

    def _execute(self, statement: sa.TextualSelect, params: dict[str, Any]) -> list[Any]:
        with self._connect() as conn:
            rows = list(conn.execute(statement, params).all())
            conn.commit()
        return rows

    def _connect(self) -> sa.Connection:
        """PostgreSQL: an autocommit connection (one round trip per statement, the row lock held only
        for it). SQLite: an ordinary write transaction (the one writer lock)."""
        conn = self.db.engine.connect()
        if self.db.is_postgres:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn


_PUSH = {postgres: sa.text(f"UPDATE rate_limit SET next_at = {'GREATEST' if postgres else 'MAX'}(next_at, :at) "
                           "WHERE key = :key") for postgres in (False, True)}
_PRUNE = sa.text("DELETE FROM rate_limit WHERE next_at < :cutoff")


@functools.lru_cache(maxsize=64)
def _upsert(postgres: bool, keys: int) -> sa.TextualSelect:
    """The upsert for `keys` keys, built once per number of keys (a text clause built on every
    reservation was compiled, and its cache key made, every time)."""
    values = ", ".join(f"(:k{i}, :n{i}, :s{i}, :b{i}, :g{i})" for i in range(keys))
    # Its columns by position: SQLAlchemy keeps the result's metadata with the compiled statement
    # instead of building it from the driver's description on every reservation.
    return sa.text(_upsert_sql(postgres, values)).columns(
        sa.column("key", sa.String()), sa.column("next_at", sa.Float()), sa.column("granted", sa.Integer()))


def _upsert_sql(postgres: bool, values: str) -> str:
    greatest, least = ("GREATEST", "LEAST") if postgres else ("MAX", "MIN")
    # The floor the request was made with: excluded.next_at is floor + granted * spacing (the new-key values).
    base = f"{greatest}(rate_limit.next_at, excluded.next_at - excluded.granted * excluded.spacing)"
    first = f"({base} - (excluded.burst - 1) * excluded.spacing)"
    ratio = f"((:deadline - {first}) / excluded.spacing)"
    whole = f"CAST(FLOOR{ratio} AS INTEGER)" if postgres else f"CAST({ratio} AS INTEGER)"  # ratio >= 0 here
    granted = f"{least}(excluded.granted, CASE WHEN {first} > :deadline THEN 0 ELSE {whole} + 1 END)"
    return (f"INSERT INTO rate_limit (key, next_at, spacing, burst, granted) VALUES {values} "
            f"ON CONFLICT (key) DO UPDATE SET granted = {granted}, next_at = {base} + {granted} * excluded.spacing, "
            "spacing = excluded.spacing, burst = excluded.burst "
            "RETURNING key, next_at, granted")
