"""The running service: database, settings, engine runtime, journeys, and the use cases.

One `Service` per process (or per test). The FastAPI app, the CLI and the
benchmarks all build one, so they share exactly the same code paths. The use
cases (`save_order`, `record_order_event`, `handle_inbound`, `receive`,
`process`) are the one way in: every caller that stores an order or an event
gets the journeys that follow it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from bot.conversation import gateway
from bot.conversation.ack import AckWriter
from bot.conversation.csat import ask_csat
from bot.conversation.turn import Turn
from bot.core import holdout, metrics
from bot.core.channels import InboundMessage
from bot.core.clock import system_clock
from bot.core.db import Database
from bot.core.models import Conversation, Customer, Escalation, Order, OrderEvent
from bot.core.runtime import Runtime
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings, get_settings
from bot.core.shopconfig import load_shop_config
from bot.delivery import dispatcher
from bot.journeys.hooks import Journeys
from bot.store import escalations, holds
from bot.store.orders import apply_event, find_customer, upsert_order
from intents.classifier import model_loaded

log = logging.getLogger(__name__)


def llm_classifier(settings: Settings) -> Any:
    """The local classifier with the optional LLM fallback (only for unsure readings, 3 s bound)."""
    llm = settings.llm
    vetted: list[bool] = []  # the base URL's verdict, decided at the first call (it needs DNS)

    def base_url_allowed() -> bool:
        if not llm.base_url or not llm.configured:
            return True
        if not vetted:
            from bot.core.urlguard import HostNotResolved, UnsafeURL, vet_url

            try:
                vet_url(llm.base_url, setting="OPENAI_BASE_URL", allow_private=settings.allow_private_urls)
            except UnsafeURL as exc:
                log.error("%s; the LLM fallback is off, the local classifier answers alone", exc)
                vetted.append(False)
            except HostNotResolved:
                return False  # not decided: asked again next time
            else:
                vetted.append(True)
        return vetted[0]

    def classify(text: str, context: Any) -> Any:
        from intents.llm import classify_with_llm

        api_key = llm.api_key.get_secret_value() if base_url_allowed() else ""  # no key: local classifier only
        return classify_with_llm(text, context, api_key=api_key, base_url=llm.base_url or None,
                                 model=llm.model, timeout=llm.timeout_seconds)

    return classify


@dataclass
class ModelStatus:
    """Where the intent model is: `loading` until `Service.load_model` ran, then `ready` or `failed`."""

    state: str = "loading"
    error: str | None = None


class BatchProcessor:
    """Coalesces conversation work in a busy process: every message submitted while a batch runs goes
    into the next one (up to `max_batch`), identified and handled together (`Service.process_messages`:
    one transaction identifies them and handles their conversations).

    At a trickle each batch holds one conversation and nothing waits; under load the per-transaction
    costs (lock, reads, commit) are shared by the batch. The work runs in one thread of its own, so it
    never queues in the default thread pool that webhook acknowledgements use. Belongs to one event loop.
    """

    def __init__(self, run: Callable[[list[int]], Any], *, max_batch: int = 50) -> None:
        self._run = run
        self._max_batch = max_batch
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[int, list[asyncio.Future[None]]] = {}
        self._drainer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorstep-process")

    def serves_running_loop(self) -> bool:
        return self._loop is asyncio.get_running_loop() and not self._loop.is_closed()

    async def submit(self, item: int) -> None:
        done: asyncio.Future[None] = self._loop.create_future()
        self._waiting.setdefault(item, []).append(done)
        if self._drainer is None or self._drainer.done():
            self._drainer = self._loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[: self._max_batch]
            futures = [future for item in ids for future in self._waiting.pop(item)]
            try:
                await self._loop.run_in_executor(self._thread, self._run, ids)
            except Exception as exc:  # handled alone inside process_many; this is the unexpected rest
                log.exception("processing a batch of %d messages failed; will be retried", len(ids))
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for future in futures:
                    if not future.done():
                        future.set_result(None)


@dataclass(frozen=True)
class SavedOrder:
    order: Order
    customer: Customer
    created: bool


@dataclass(frozen=True)
class RecordedEvent:
    order: Order
    customer: Customer
    event: OrderEvent
    duplicate: bool  # the same event (type + time) was recorded before: nothing changed


@dataclass
class Service:
    settings: Settings
    db: Database
    runtime: Runtime
    journeys: Journeys
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    model: ModelStatus = field(default_factory=ModelStatus)
    _acks: AckWriter | None = field(default=None, repr=False)
    _processor: BatchProcessor | None = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings | None = None, *, db: Database | None = None, migrate: bool = True,
               clock: Any = None, shop_overrides: dict[str, Any] | None = None) -> Service:
        settings = settings or get_settings()
        db = db or Database(settings.database_url)
        if migrate:
            db.migrate()
        shop = load_shop_config(settings.config_path, overrides=shop_overrides)
        for key in ("shop_name", "support_contact"):  # doorstep.yaml wins, then the environment
            if not shop.get(key):
                shop[key] = getattr(settings, key)
        runtime = Runtime(timezone=settings.timezone, shop_config=shop, clock=clock or system_clock)
        db.clock = runtime.clock  # rows stamped at flush share the runtime's timeline
        db.planning = {"shop": shop, "timezone": settings.timezone,
                       "whatsapp_templates": sorted(settings.twilio.whatsapp_templates),  # kinds mapped to a SID
                       "quiet_hours": settings.quiet_hours if settings.quiet_hours is not None
                       else shop.get("contact_policy", {}).get("quiet_hours", "")}
        db.after_outbox_commit = functools.partial(dispatcher.notify, db)  # this process's dispatchers and, on PostgreSQL, the others'
        metrics.watch_lock_errors(db.engine)
        if settings.llm.configured:
            runtime.classifier = llm_classifier(settings)
        service = cls(settings=settings, db=db, runtime=runtime,
                      journeys=Journeys(db=db, runtime=runtime, settings=settings))
        if model_loaded():
            service.model.state = "ready"  # another service in this process loaded it already
        return service

    def load_model(self) -> None:
        """Load (or train, once) the intent model before serving, outside any transaction.

        Blocking and thread-safe: `serve` runs it in a thread at start while `/healthz`
        answers 503. A failure is recorded for `/healthz` and logged, not raised.
        """
        started = time.perf_counter()
        try:
            self.runtime.warm_up()
        except Exception as exc:
            self.model.state, self.model.error = "failed", f"{exc.__class__.__name__}: {exc}"[:300]
            log.exception("the intent model could not be loaded")
            return
        self.model.state, self.model.error = "ready", None
        log.info("intent model ready in %.1f s", time.perf_counter() - started)

    def now(self) -> datetime:
        return self.runtime.now()

    # ------------------------------------------------------------ use cases (caller's transaction)

    def save_order(self, session: Session, order_in: OrderIn, *, journeys: bool = True) -> SavedOrder:
        """Create or update an order (idempotent on `order_id`), then the journeys a new order starts.

        Raises `Conflict` when the id belongs to another customer. `journeys=False` stores the order
        only (conversation tests that set up orders without their messages)."""
        known = find_customer(session=session, phone=order_in.customer.phone,
                              telegram_chat_id=order_in.customer.telegram_chat_id)
        if known is not None:
            self._lock_conversation_first(session, known.id)
        order, created = upsert_order(session=session, order_in=order_in,
                                      holdout=holdout.assign(order_in.order_id, self.runtime.shop_config))
        session.flush()
        customer = session.get(Customer, order.customer_id)
        assert customer is not None
        if journeys:
            self.journeys.order_saved(session=session, order=order, customer=customer, created=created)
        return SavedOrder(order, customer, created)

    def record_order_event(self, session: Session, order: Order, event_in: OrderEventIn, *, source: str = "api",
                           journeys: bool = True) -> RecordedEvent:
        """Record a shipment event, move the order's status, then the journeys the event starts.

        A repeat of the same event changes nothing and starts nothing. Raises `Conflict` for an
        impossible transition (nothing is written)."""
        self._lock_conversation_first(session, order.customer_id)
        event, duplicate = apply_event(session=session, order=order, event_in=event_in, source=source)
        customer = session.get(Customer, order.customer_id)
        assert customer is not None
        if journeys and not duplicate:
            self.journeys.order_event(session=session, order=order, customer=customer, event=event)
        return RecordedEvent(order, customer, event, duplicate)

    def handle_inbound(self, inbound: InboundMessage) -> gateway.Handled:
        """Receive + process synchronously (console channel, tests, benchmarks)."""
        started = time.perf_counter()
        handled = gateway.handle_inbound(self.db, self.runtime, inbound, journeys=self.journeys)
        self._observe(inbound.channel, handled, started)
        return handled

    def _lock_conversation_first(self, session: Session, customer_id: int | None) -> None:
        """Take the customer's conversation lock before the order's row: the engine, which holds the
        conversation while it changes an order, takes them in that order too, so the two paths never
        wait for each other in a circle (a PostgreSQL deadlock that would fail one of them)."""
        conversation_id = session.exec(select(Conversation.id).where(Conversation.customer_id == customer_id)).first()
        if conversation_id is not None:
            self.db.lock_row(session, "conversation", conversation_id)

    def resolve_escalation(self, session: Session, escalation_id: int, *, agent: str, note: str = "",
                           csat: bool | None = None) -> Escalation:
        """Close an escalation and hand the conversation back to the bot: the automatic messages held while
        a person owned it go out if still relevant (the obsolete are closed), and a released question
        (the COD confirmation, the feedback survey) opens its flow, so the customer's answer is read.
        Then, when no such question is open, the one-tap CSAT question (`csat`: ask or not; None = the
        shop's `inbox.csat`). Resolving twice is harmless. Raises `NotFound` for an unknown escalation."""
        now = self.now()
        escalation = escalations.resolve(session=session, escalation_id=escalation_id, agent=agent, note=note,
                                         now=now)
        released = holds.release_held(session=session, customer_id=escalation.customer_id, now=now)
        customer = session.get(Customer, escalation.customer_id)
        for order_pk, flow in released.flows:
            order = session.get(Order, order_pk)
            if order is not None and customer is not None:
                self.journeys.open_flow(session, customer, flow, order=order, now=now)
        ask_csat(session=session, runtime=self.runtime, escalation=escalation, now=now, enabled=csat)
        return escalation

    def process_pending(self) -> int:
        """Recover inbound messages a crash left stored but unprocessed (the per-second tick)."""
        return gateway.process_pending(self.db, self.runtime, journeys=self.journeys)

    def receive(self, inbound: InboundMessage) -> gateway.Received:
        """Store one inbound message in its own transaction (not identified yet; `process_message` does)."""
        received = gateway.receive(self.db, inbound, now=self.now())
        if received.duplicate:
            metrics.INBOUND_DUPLICATES.labels(inbound.channel).inc()
        return received

    async def acknowledge(self, inbound: InboundMessage) -> gateway.Received:
        """The webhooks' acknowledgement: store the message, group-committed with every concurrent
        request (bot/conversation/ack.py); returns once its row is committed. Identifying the sender
        and the conversation is `process_message`'s job, after the answer."""
        if self._acks is None:
            self._acks = AckWriter(self.db)
        received = await self._acks.store(gateway.inbound_row(inbound, now=self.now()))
        if received.duplicate:
            metrics.INBOUND_DUPLICATES.labels(inbound.channel).inc()
        return received

    def process_message(self, message_id: int, channel: str = "") -> gateway.Handled:
        """Identify a stored inbound message (and every earlier one), then run its conversation."""
        started = time.perf_counter()
        handled = gateway.Handled(duplicate=False, turns=gateway.process_message(
            self.db, self.runtime, message_id, journeys=self.journeys))
        self._observe(channel, handled, started)
        return handled

    def process(self, conversation_id: int, channel: str = "") -> gateway.Handled:
        started = time.perf_counter()
        handled = gateway.Handled(duplicate=False, turns=gateway.process(self.db, self.runtime, conversation_id, journeys=self.journeys))
        self._observe(channel, handled, started)
        return handled

    def process_many(self, conversation_ids: list[int]) -> list[Turn]:
        """`process` for several conversations in one transaction (`gateway.process_many`)."""
        started = time.perf_counter()
        turns = gateway.process_many(self.db, self.runtime, conversation_ids, journeys=self.journeys)
        self._observe("", gateway.Handled(duplicate=False, turns=turns), started)
        return turns

    def process_messages(self, message_ids: list[int]) -> list[Turn]:
        """Identify stored messages, then run their conversations together (`gateway.process_messages`)."""
        started = time.perf_counter()
        turns = gateway.process_messages(self.db, self.runtime, message_ids, journeys=self.journeys)
        self._observe("", gateway.Handled(duplicate=False, turns=turns), started)
        return turns

    async def process_soon(self, message_id: int) -> None:
        """Identify and handle a stored message after its webhook was answered, batched with every other
        message waiting at that moment (`BatchProcessor`); returns when its batch committed. A failure
        is logged and left to `process_pending` (the message is stored)."""
        if self._processor is None or not self._processor.serves_running_loop():
            self._processor = BatchProcessor(self.process_messages)
        await self._processor.submit(message_id)

    def _observe(self, channel: str, handled: gateway.Handled, started: float) -> None:
        if handled.duplicate:
            metrics.INBOUND_DUPLICATES.labels(channel).inc()
            return
        metrics.HANDLE_SECONDS.observe(time.perf_counter() - started)
        for turn in handled.turns:
            intent = turn.classification.intent.value if turn.classification else "none"
            metrics.INBOUND.labels(turn.channel or channel, intent).inc()
            if turn.flow:
                metrics.FLOW_COMPLETIONS.labels(turn.flow).inc()
