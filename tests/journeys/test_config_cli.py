"""doorstep.yaml validation, `doorstep config check`, `doorstep simulate` and `doorstep erase`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.app import app
from bot.core.settings import Settings, reset_settings_cache
from bot.core.shopconfig import ConfigError, load_shop_config, parse_quiet_hours

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_documented_example_is_valid_and_changes_the_policy() -> None:
    config = load_shop_config(REPO / "doorstep.example.yaml")
    assert config["review_link"].startswith("https://")
    assert config["journeys"]["feedback"]["delay"] == "3d"
    assert config["reschedule"]["max_days_ahead"] == 7  # other parts' sections survive


def test_errors_name_the_file_the_line_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "doorstep.yaml"
    path.write_text("shop_name: Chai\njourneys:\n  shipped:\n    delay: soon\n  shiped: true\n"
                    "contact_policy:\n  caps:\n    per_order_per_day: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_shop_config(path)
    text = str(caught.value)
    assert f"{path}:4: journeys.shipped.delay: 'soon' is not a duration" in text
    assert f"{path}:5: journeys.shiped: unknown journey" in text
    assert f"{path}:8: contact_policy.caps.per_order_per_day: must be a whole number" in text


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "doorstep.yaml"
    path.write_text("shop_name: Chai\njourneys:\n  shipped: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"doorstep.yaml:\d+: not valid YAML"):
        load_shop_config(path)


def test_shorthand_disables_a_journey(tmp_path: Path) -> None:
    path = tmp_path / "doorstep.yaml"
    path.write_text("journeys:\n  shipped: false\n", encoding="utf-8")
    config = load_shop_config(path)
    assert config["journeys"]["shipped"]["enabled"] is False
    assert config["journeys"]["shipped"]["valid_for"] == "48h"


def test_quiet_hours_parsing() -> None:
    quiet = parse_quiet_hours("21:00-08:00")
    assert quiet is not None and quiet.contains(parse_time("23:59")) and not quiet.contains(parse_time("08:00"))
    assert parse_quiet_hours("") is None
    with pytest.raises(ValueError):
        parse_quiet_hours("9pm-8am")


def parse_time(text: str):  # type: ignore[no-untyped-def]
    from datetime import time

    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def test_config_check_command(tmp_path: Path) -> None:
    good = runner.invoke(app, ["config", "check", str(REPO / "doorstep.example.yaml")])
    assert good.exit_code == 0 and "OK" in good.output and "feedback" in good.output
    bad = tmp_path / "doorstep.yaml"
    bad.write_text("contact_policy:\n  quiet_hours: 25:00-08:00\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "check", str(bad)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "doorstep.yaml:2: contact_policy.quiet_hours" in result.output


TIMELINE = """
start: "2026-11-23T20:00:00+05:30"
order:
  order_id: T1
  customer: {name: Asha, phone: "+919812345678", locale: en, channel: sms}
  items: [{sku: TS, name: T-shirt, qty: 1, price: "499.00"}]
  total: "499.00"
  payment_method: prepaid
  shipping_address: {line1: "12 MG Road", city: Bengaluru, postal_code: "560001", country: IN}
events:
  - {type: shipped, after: 90m}
  - {type: out_for_delivery, after: 12h}
  - {type: delivered, after: 3h}
"""


def test_simulate_replays_a_timeline_on_a_fake_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_TIMEZONE", "Asia/Kolkata")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'real.db'}")
    reset_settings_cache()
    path = tmp_path / "timeline.yaml"
    path.write_text(TIMELINE, encoding="utf-8")
    result = runner.invoke(app, ["simulate", "--timeline", str(path), "--json", "--days", "5"])
    reset_settings_cache()
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    sent = [(m["journey"], m["sent_at"]) for m in out["messages"] if m["status"] == "sent"]
    assert sent == [
        ("order_confirmed", "2026-11-23T14:30:00+00:00"),   # 20:00 IST
        ("shipped", "2026-11-24T02:30:00+00:00"),           # 21:30 is quiet: 08:00 IST
        ("out_for_delivery", "2026-11-24T04:00:00+00:00"),  # 09:30 IST
        ("delivered", "2026-11-24T07:00:00+00:00"),         # 12:30 IST
        ("feedback", "2026-11-27T07:00:00+00:00"),          # three days later
    ]
    assert not (tmp_path / "real.db").exists()  # a timeline replay never touches the real database


def test_erase_command(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from bot.service import Service
    from tests.support.factories import order_payload

    service = Service.create(settings)
    with TestClient(create_app(service=service)) as client:
        assert client.post("/api/orders", json=order_payload(),
                           headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}).status_code == 201
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    reset_settings_cache()
    try:
        first = runner.invoke(app, ["erase", "+919812345678", "--yes"])
        second = runner.invoke(app, ["erase", "+919812345678", "--yes"])
        unknown = runner.invoke(app, ["erase", "+14155550199", "--yes"])
    finally:
        reset_settings_cache()
    assert first.exit_code == 0 and "Erased +91******5678: 1 orders" in first.output
    assert "9812345678" not in first.output
    assert second.exit_code == 0 and "already erased" in second.output
    assert unknown.exit_code == 1
    service.db.dispose()


def test_simulate_prices_each_journey_and_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.core.shopconfig import DEFAULTS

    monkeypatch.setenv("DOORSTEP_TIMEZONE", "Asia/Kolkata")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'real.db'}")
    reset_settings_cache()
    path = tmp_path / "timeline.yaml"
    path.write_text(TIMELINE.replace("channel: sms", "channel: whatsapp"), encoding="utf-8")
    try:
        approved = runner.invoke(app, ["simulate", "--timeline", str(path), "--json", "--days", "5",
                                       "--templates-approved"])
        pending = runner.invoke(app, ["simulate", "--timeline", str(path), "--json", "--days", "5"])
    finally:
        reset_settings_cache()
    assert approved.exit_code == 0 and pending.exit_code == 0, approved.output + pending.output
    pricing = DEFAULTS["messaging"]["pricing"]
    priced = json.loads(approved.output)
    by_journey = {m["journey"]: m for m in priced["messages"] if m["status"] == "sent"}
    utility = pricing["whatsapp_fee"] + pricing["whatsapp"]["IN"]["utility"]
    marketing = pricing["whatsapp_fee"] + pricing["whatsapp"]["IN"]["marketing"]
    assert by_journey["shipped"]["cost"] == pytest.approx(utility) and by_journey["shipped"]["form"] == "template"
    assert "quiet hours: waits until 08:00" in by_journey["shipped"]["plan_reason"]  # 21:30 IST is quiet
    assert by_journey["feedback"]["cost"] == pytest.approx(marketing)  # feedback is marketing
    assert priced["cost"]["per_journey"]["shipped"] == pytest.approx(utility)
    assert priced["cost"]["total"] == pytest.approx(sum(m["cost"] for m in priced["messages"]))
    # No approved template yet: the same journeys go by SMS at India's SMS price, and say why.
    sms = [m for m in json.loads(pending.output)["messages"] if m["status"] == "sent"]
    assert {m["channel"] for m in sms} == {"sms"} and all("no approved template" in m["plan_reason"] for m in sms)
    assert json.loads(pending.output)["cost"]["total"] == pytest.approx(len(sms) * pricing["sms"]["IN"])
