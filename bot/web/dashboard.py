"""The outcome dashboard (`/dashboard`): what Doorstep changed, with charts, for a logged-in agent.

The page lives at /inbox/dashboard so the inbox's login session (its cookie is scoped to /inbox,
bot.web.inbox_session) carries over; `/dashboard` sends the browser there, and an agent who is not
logged in goes to the inbox's login form. The charts are SVG drawn on the server (bot.reports.charts)
and inlined as data: images, so the page needs no script and nothing from the network. It only reads.
"""

from __future__ import annotations

import base64
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.reports import charts
from bot.reports.outcomes import build_report, describe_interval, describe_sample, format_value
from bot.web.deps import ReadSessionDep, ServiceDep
from bot.web.inbox_session import PageAgentDep

router = APIRouter(tags=["dashboard"], include_in_schema=False)

PAGE = "/inbox/dashboard"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "dashboard"
STATIC_DIR = Path(__file__).resolve().parent / "static"
WEEKLY_CHARTS = (("wismo_per_1000", "WISMO contacts per 1,000 orders"), ("cod_rto_rate", "COD orders returned, %"),
                 ("failed_recovery_rate", "Delivered after a failed attempt, %"),
                 ("containment_rate", "Contacts resolved without a person, %"))
SECURITY_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["value"] = lambda row, value, currency="": format_value(row, value, currency=currency)
    env.filters["interval"] = lambda row, currency="": describe_interval(row, currency=currency)
    env.filters["sample"] = describe_sample
    env.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.1f} %"
    return env


def _image(svg: str | None) -> str | None:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode() if svg else None


@router.get("/dashboard")
def dashboard_door(request: Request) -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(PAGE + query, status_code=status.HTTP_303_SEE_OTHER)


@router.get(f"{PAGE}/static/dashboard.css")
def stylesheet() -> Response:
    return Response((STATIC_DIR / "dashboard.css").read_text(encoding="utf-8"), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=300"})


@router.get(PAGE, response_class=HTMLResponse)
def dashboard(agent: PageAgentDep, session: ReadSessionDep, service: ServiceDep, since: str = "") -> HTMLResponse:
    first: date | None = None
    error = ""
    if since:
        try:
            first = date.fromisoformat(since)
        except ValueError:
            error = "The first week must be a date like 2026-11-02; showing the default period."
    report = build_report(session, config=service.runtime.shop_config, now=service.now(), since=first)
    views: list[dict[str, Any]] = []
    for experiment in report["experiments"]:
        views.append({
            **experiment,
            "effects_chart": _image(charts.effects(experiment["kpis"])),
            "weekly_charts": [(label, _image(charts.weekly(experiment["weekly"], key, label)))
                              for key, label in WEEKLY_CHARTS],
        })
    replies = {by: _image(charts.reply_rates(report["reply_rates"][f"by_{by}"], by)) for by in ("channel", "journey")}
    html = _env().get_template("dashboard.html").render(
        agent=agent, report=report, experiments=views, replies=replies, error=error, since=since)
    return HTMLResponse(html, status_code=status.HTTP_400_BAD_REQUEST if error else 200, headers=SECURITY_HEADERS)
