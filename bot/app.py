"""The FastAPI application: API, webhooks, inbox, metrics, plus the background
workers (dispatcher and scheduler) when run by `doorstep serve`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from bot import wiring
from bot.core.metrics import OperationsCollector
from bot.core.settings import Settings
from bot.reports.metrics import OutcomesCollector
from bot.service import Service
from bot.store.auth import ensure_api_key
from bot.web import dashboard, inbox, inbox_media, inbox_work, routes
from bot.web.deps import require_api_key
from bot.web.errors import install_error_handlers
from bot.web.httplimits import BodyLimitMiddleware

log = logging.getLogger(__name__)

# (module, requires the API key). Each module exposes `router`; the integrations' webhook routers come
# from `bot.wiring` and authenticate their own requests. They come first: routes are matched in order,
# and every inbound message is a webhook (matching past the API's and the inbox's routes cost a
# webhook ≈ a third of its time in FastAPI; no path of theirs overlaps another's).
ROUTERS: list[tuple[ModuleType, bool]] = [
    *((module, False) for module in wiring.ROUTERS),
    (routes.orders, True),
    (routes.escalations, True),
    (routes.events, True),
    (routes.customers, True),
    (routes.reports, True),
    (inbox, False),  # its own cookie login
    (inbox_work, False),
    (inbox_media, False),
    (dashboard, False),  # the inbox's cookie login
]


# The collector's thresholds in a server process (`freeze_startup_heap`): young objects every 50,000
# allocations (Python's default is 700), the middle and old generations at their usual ratios.
GC_THRESHOLD = (50_000, 10, 10)


def freeze_startup_heap() -> None:
    """Move everything alive now (modules, the intent model, settings: the long-lived heap) out of the
    garbage collector's reach. Its full collections then scan only what came later: with the model
    loaded one took ≈ 100 ms and paused every request in flight (measured in docs/benchmarks.md).
    For a server process once it is ready, not for a library user's process (nothing frozen is freed).

    The youngest generation is then collected every `GC_THRESHOLD[0]` new container objects instead of
    Python's 700: a batch of messages allocates hundreds of thousands (rows, readings, replies), almost
    all freed by reference counting, and collecting after every 700 cost ≈ 8 % of a batch's CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def create_app(settings: Settings | None = None, *, service: Service | None = None, workers: bool = False,
               freeze_heap: bool = False) -> FastAPI:
    """Build the app. `workers=True` also runs the dispatcher and scheduler in-process; `freeze_heap`
    (`doorstep serve`) calls `freeze_startup_heap` once the intent model has loaded."""
    service = service or Service.create(settings)
    wiring.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The intent model loads (or trains, once) in a thread while the server already
        # answers: /healthz says 503 until it is ready, and message handling waits for it
        # outside its transaction (Runtime.warm_up), never training inside one.
        model_loading = asyncio.create_task(asyncio.to_thread(service.load_model))
        if freeze_heap:
            model_loading.add_done_callback(lambda task: None if task.cancelled() else freeze_startup_heap())
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
            model_loading.cancel()  # shutting down: stop waiting for it (the loading thread ends by itself)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, model_loading, return_exceptions=True)

    app = FastAPI(
        title="Doorstep",
        version="0.1.0",
        description="Two-way post-purchase messaging bot: orders, webhooks, escalations, logistics feed.",
        lifespan=lifespan,
        docs_url=None,  # served below from bundled assets: the default page loads Swagger UI from a CDN
        redoc_url=None,
    )
    app.state.service = service
    _add_docs(app)

    install_error_handlers(app)  # typed errors -> 4xx {"detail": …}, in one place (bot/web/errors.py)

    @app.get("/healthz", tags=["ops"], responses={503: {"description": "Not ready: the model is loading, or the "
                                                                   "database is unavailable (`reason` says which)"}})
    def healthz() -> JSONResponse:
        """Ready (200) when the intent model is loaded and the database answers; otherwise 503 with a reason."""
        return health_response(service)

    operations = CollectorRegistry(auto_describe=True)
    operations.register(OperationsCollector(service.db, service.now))
    operations.register(OutcomesCollector(service.db, service.now, service.runtime.shop_config))

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        # Process counters, then this service's gauges read from its database at scrape time.
        body = generate_latest(REGISTRY) + generate_latest(operations)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    path_limits: dict[str, int] = {}
    for module, keyed in ROUTERS:
        dependencies = [Depends(require_api_key)] if keyed else []
        app.include_router(module.router, dependencies=dependencies)
        if hasattr(module, "MAX_BODY_BYTES"):  # the router's own body limit, for each of its paths
            path_limits.update({route.path: int(module.MAX_BODY_BYTES) for route in module.router.routes
                                if isinstance(route, APIRoute)})
    # Outermost of the app's own layers: bodies are limited before any route (or its auth) reads them.
    app.add_middleware(BodyLimitMiddleware, default_limit=service.settings.max_body_bytes, path_limits=path_limits)
    return app


def health_response(service: Service) -> JSONResponse:
    """`{"status", "database", "model", "reason"}`: 200 when ready, 503 while the model loads or the database is down."""
    import sqlalchemy as sa

    reasons: list[str] = []
    if service.model.state == "loading":
        reasons.append("the intent model is loading")
    elif service.model.state == "failed":
        reasons.append("the intent model failed to load (see the log)")
    try:
        with service.db.read() as session:
            session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        # The error class only: driver messages can carry the host or user name.
        log.warning("healthz: database unavailable (%s)", exc.__class__.__name__)
        reasons.append("the database is unavailable")
    body = {"status": "not_ready" if reasons else "ok", "database": service.db.engine.dialect.name,
            "model": service.model.state, "reason": "; ".join(reasons) or None}
    return JSONResponse(body, status_code=503 if reasons else 200)


DOCS_ASSETS = Path(__file__).resolve().parent / "web" / "static" / "swagger-ui"


def _add_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) from assets bundled in bot/web/static/swagger-ui, so it works offline."""
    app.mount("/docs/static", StaticFiles(directory=DOCS_ASSETS), name="docs-static")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js", swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png", oauth2_redirect_url=oauth2_redirect,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def print_new_api_key(key: str) -> None:
    from rich.console import Console
    from rich.panel import Panel

    Console(stderr=True).print(Panel.fit(
        f"[bold]{key}[/bold]\n\nThis API key was generated because DOORSTEP_API_KEY is not set.\n"
        "It is shown only once; store it now. Use it as 'Authorization: Bearer <key>'.\n"
        "Lost it? Run 'doorstep api-key --rotate'.",
        title="Doorstep API key", border_style="yellow",
    ))
