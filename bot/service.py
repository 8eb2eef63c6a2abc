"""The running service: database, settings, engine runtime, hooks and workers.

One `Service` per process (or per test). The FastAPI app, the CLI and the
benchmarks all build one, so they share exactly the same code paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.conversation import gateway
from bot.conversation.engine import Runtime
from bot.core import metrics
from bot.core.channels import InboundMessage
from bot.core.clock import system_clock
from bot.core.db import Database
from bot.core.settings import Settings, get_settings
from bot.core.shopconfig import load_shop_config
from bot.journeys.hooks import Journeys
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


@dataclass
class Service:
    settings: Settings
    db: Database
    runtime: Runtime
    hooks: Any = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    model: ModelStatus = field(default_factory=ModelStatus)

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
        metrics.watch_lock_errors(db.engine)
        if settings.llm.configured:
            runtime.classifier = llm_classifier(settings)
        service = cls(settings=settings, db=db, runtime=runtime)
        if model_loaded():
            service.model.state = "ready"  # another service in this process loaded it already
        service.hooks = Journeys(service)
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

    def handle_inbound(self, inbound: InboundMessage) -> gateway.Handled:
        """Receive + process synchronously (console channel, tests, benchmarks)."""
        started = time.perf_counter()
        handled = gateway.handle_inbound(self.db, self.runtime, inbound)
        self._observe(inbound.channel, handled, started)
        return handled

    def receive(self, inbound: InboundMessage) -> gateway.Received:
        received = gateway.receive(self.db, inbound, now=self.now())
        if received.duplicate:
            metrics.INBOUND_DUPLICATES.labels(inbound.channel).inc()
        return received

    def process(self, conversation_id: int, channel: str = "") -> gateway.Handled:
        started = time.perf_counter()
        handled = gateway.Handled(duplicate=False, turns=gateway.process(self.db, self.runtime, conversation_id))
        self._observe(channel, handled, started)
        return handled

    def _observe(self, channel: str, handled: gateway.Handled, started: float) -> None:
        if handled.duplicate:
            metrics.INBOUND_DUPLICATES.labels(channel).inc()
            return
        metrics.HANDLE_SECONDS.observe(time.perf_counter() - started)
        for turn in handled.turns:
            intent = turn.classification.intent.value if turn.classification else "none"
            metrics.INBOUND.labels(channel, intent).inc()
            if turn.flow:
                metrics.FLOW_COMPLETIONS.labels(turn.flow).inc()
