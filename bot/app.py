"""The FastAPI application: API, webhooks, inbox, metrics, plus the background
workers (dispatcher and scheduler) when run by `doorstep serve`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.api.deps import require_api_key
from bot.auth import ensure_api_key
from bot.service import Service
from bot.settings import Settings

log = logging.getLogger(__name__)

# (module, requires the API key). Each module exposes `router`.
ROUTERS: list[tuple[str, bool]] = [
    ("bot.api.orders", True),
    ("bot.api.escalations", True),
    ("bot.api.events", True),
    ("bot.api.customers", True),
    ("bot.inbox", False),  # its own cookie login
    ("integrations.twilio_webhooks", False),  # Twilio signature
    ("integrations.telegram_webhooks", False),  # secret token header
    ("integrations.carrier_webhooks", False),  # HMAC / AfterShip signature
    ("integrations.rasa_actions", False),  # ?token=
    ("integrations.chatwoot", False),  # webhook token
]


def create_app(settings: Settings | None = None, *, service: Service | None = None, workers: bool = False) -> FastAPI:
    """Build the app. `workers=True` also runs the dispatcher and scheduler in-process."""
    service = service or Service.create(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        new_key = ensure_api_key(service.db, service.settings.api_key.get_secret_value())
        if new_key:
            print_new_api_key(new_key)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        if workers:
            from bot.workers import start_workers

            tasks = await start_workers(service, stop)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="Doorstep",
        version="0.1.0",
        description="Two-way post-purchase messaging bot: orders, webhooks, escalations, logistics feed.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Field-level reasons, never the submitted values (they may hold phone numbers).
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": details})

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # json.loads on `[[[[…]]]]` nested thousands deep: a bad request, not a server error.
        return JSONResponse(status_code=400, content={"detail": "request body: JSON nested too deeply"})

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        from sqlalchemy import text

        with service.db.read() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": service.db.engine.dialect.name}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for module_name, keyed in ROUTERS:
        module = importlib.import_module(module_name)
        dependencies = [Depends(require_api_key)] if keyed else []
        app.include_router(module.router, dependencies=dependencies)
    return app


def print_new_api_key(key: str) -> None:
    from rich.console import Console
    from rich.panel import Panel

    Console(stderr=True).print(Panel.fit(
        f"[bold]{key}[/bold]\n\nThis API key was generated because DOORSTEP_API_KEY is not set.\n"
        "It is shown only once; store it now. Use it as 'Authorization: Bearer <key>'.\n"
        "Lost it? Run 'doorstep api-key --rotate'.",
        title="Doorstep API key", border_style="yellow",
    ))
