"""Reports: `GET /api/reports/outcomes`, the outcome report as JSON (the same as `doorstep report --json`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from bot.reports.outcomes import build_report
from bot.web.deps import ReadSessionDep, ServiceDep

router = APIRouter(prefix="/api/reports", tags=["reports"])


@router.get("/outcomes")
def outcomes_report(session: ReadSessionDep, service: ServiceDep,
                    since: Annotated[date | None, Query(description="First week (moved back to its Monday); "
                                                                    "default: the first order in an experiment")] = None,
                    ) -> dict[str, Any]:
    """Treatment against holdout per KPI, with 95 % confidence intervals, the sample each comparison needs,
    week-by-week values and reply rates. Read README "How to read the outcome report" before quoting it."""
    return build_report(session, config=service.runtime.shop_config, now=service.now(), since=since)
