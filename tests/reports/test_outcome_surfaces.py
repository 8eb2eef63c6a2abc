"""Where the outcome report is seen: `GET /api/reports/outcomes` (API key), `/metrics` gauges, the `/dashboard`
page (agent login, charts inline, strict CSP), `doorstep report`; and the settings it reads. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot.app import create_app
from bot.cli.app import app as cli_app
from bot.cli.shop_sim import ShopModel, run_simulation, simulation_settings
from bot.core.clock import FakeClock
from bot.core.settings import Settings, reset_settings_cache
from bot.core.shopconfig import ConfigError, read_config_file
from bot.service import Service
from tests.handoff.test_inbox import login


@pytest.fixture
def shop(settings: Settings) -> Iterator[TestClient]:
    """A small simulated shop, and the app looking at it three weeks after its last order."""
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    fast = simulation_settings(settings)
    overrides = {"holdout": {"share": 0.5, "salt": "surfaces"},
                 "messaging": {"pricing": {"sms": {"IN": 0.002, "*": 0.008}, "whatsapp_fee": 0.005,
                                           "whatsapp": {"IN": {"marketing": 0.0, "utility": 0.0}}}}}
    simulated = Service.create(fast, clock=clock, shop_overrides=overrides)
    outcome = run_simulation(simulated, clock, ShopModel(orders=60, weeks=1, effect=0.5, seed=3))
    simulated.db.dispose()
    service = Service.create(settings, clock=FakeClock(outcome.end + timedelta(days=21)), shop_overrides=overrides)
    with TestClient(create_app(service=service)) as client:
        yield client
    service.db.dispose()


def test_the_api_report_is_keyed_and_counts_every_order(shop: TestClient, auth: dict[str, str]) -> None:
    assert shop.get("/api/reports/outcomes").status_code == 401
    assert shop.get("/api/reports/outcomes?since=yesterday", headers=auth).status_code == 422
    report = shop.get("/api/reports/outcomes", headers=auth).json()
    (experiment,) = report["experiments"]
    assert experiment["orders"]["treatment"] + experiment["orders"]["holdout"] == 60
    assert report["since"] == "2026-06-01" and report["compared_weeks"][0] == "2026-06-01"
    kpis = {row["key"]: row for row in experiment["kpis"]}
    assert kpis["messages_per_order"]["treatment"] > kpis["messages_per_order"]["holdout"]
    assert kpis["cost_per_order"]["treatment"] > 0  # priced: SMS to India 0.002, WhatsApp 0.005
    assert 0.002 <= kpis["cost_per_order"]["treatment"] / kpis["messages_per_order"]["treatment"] <= 0.005
    assert {row["channel"] for row in report["reply_rates"]["by_channel"]} <= {"sms", "whatsapp"}
    # A later first week leaves the simulated orders out.
    later = shop.get("/api/reports/outcomes?since=2026-09-01", headers=auth).json()
    assert later["since"] == "2026-08-31" and later["experiments"][0]["orders"] == {"treatment": 0, "holdout": 0}
    assert later["weeks_left_out"] == 13 and report["weeks_left_out"] == 0  # said, so nobody quotes it unawares


def test_metrics_carry_the_same_numbers(shop: TestClient, auth: dict[str, str]) -> None:
    report = shop.get("/api/reports/outcomes", headers=auth).json()
    body = shop.get("/metrics").text
    holdout = report["experiments"][0]["orders"]["holdout"]
    assert f'doorstep_outcome_orders{{experiment="global",group="holdout"}} {float(holdout)}' in body
    wismo = next(r for r in report["experiments"][0]["kpis"] if r["key"] == "wismo_per_1000")
    line = re.search(r'doorstep_outcome_difference\{bound="estimate",experiment="global",kpi="wismo_per_1000"\} (\S+)',
                     body)
    assert line and float(line.group(1)) == pytest.approx(wismo["difference"])


def test_the_dashboard_needs_a_login_and_draws_its_charts_inline(shop: TestClient) -> None:
    door = shop.get("/dashboard?since=2026-06-01", follow_redirects=False)
    assert door.status_code == 303 and door.headers["location"] == "/inbox/dashboard?since=2026-06-01"
    assert shop.get("/inbox/dashboard", follow_redirects=False).headers["location"] == "/inbox/login"
    login(shop)
    page = shop.get("/inbox/dashboard")
    assert page.status_code == 200 and "What Doorstep changed" in page.text
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "https://" not in page.text  # nothing to fetch, works offline
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page.text)
    assert len(images) >= 3  # the effects, at least one weekly line, the reply rates
    assert all(base64.b64decode(image).lstrip().startswith(b"<?xml") for image in images)
    assert "WISMO contacts per 1,000 orders" in page.text
    bad = shop.get("/inbox/dashboard?since=soon")
    assert bad.status_code == 400 and "must be a date" in bad.text
    assert shop.get("/inbox/dashboard/static/dashboard.css").status_code == 200


def test_doorstep_report_prints_json_and_tables(shop: TestClient, settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DOORSTEP_CONFIG", "does-not-exist.yaml")
    reset_settings_cache()
    runner = CliRunner()
    result = runner.invoke(cli_app, ["report", "--json", "--since", "2026-06-03"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["since"] == "2026-06-01"
    assert sum(data["experiments"][0]["orders"].values()) == 60
    table = runner.invoke(cli_app, ["report"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "WISMO contacts per 1,000 orders" in table.output
    bad = runner.invoke(cli_app, ["report", "--since", "June"])
    assert bad.exit_code == 2 and "is not a date" in bad.output
    reset_settings_cache()


def test_an_old_config_with_an_empty_price_table_still_loads(tmp_path: Path) -> None:
    """doorstep.example.yaml used to carry `outcomes: {currency: USD, prices: {}}`: a copy of it still loads."""
    path = tmp_path / "doorstep.yaml"
    path.write_text("outcomes:\n  currency: USD\n  prices: {}\n  maturity: 7d\n", encoding="utf-8")
    assert read_config_file(path)["outcomes"]["maturity"] == "7d"
    path.write_text("messaging:\n  pricing:\n    currency: EUR\noutcomes:\n  currency: EUR\n", encoding="utf-8")
    assert read_config_file(path)["outcomes"]["currency"] == "EUR"


@pytest.mark.parametrize(("text", "problem"), [
    ("holdout:\n  share: 0.7\n", "2: holdout.share: must be a share between 0 and 0.5"),
    ("holdout:\n  journeys:\n    shiped: 0.1\n", "3: holdout.journeys.shiped: unknown journey"),
    ("outcomes:\n  prices:\n    sms:\n      IN: 0.01\n", "2: outcomes.prices: moved: message prices now come from "
                                                      "messaging.pricing"),
    ("outcomes:\n  currency: EUR\n", "2: outcomes.currency: moved: the report's currency is messaging.pricing.currency"),
    ("outcomes:\n  minimum_effect: 20\n", "2: outcomes.minimum_effect: must be a relative change"),
])
def test_bad_measurement_settings_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "doorstep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert problem in str(caught.value)
