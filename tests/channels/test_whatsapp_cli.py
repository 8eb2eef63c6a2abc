"""`doorstep whatsapp sync-templates` and `doorstep consent export` as an operator runs them: environment
settings, the real twilio client against the fake Content API, the database; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from bot.cli.app import app
from bot.core.channels import InboundMessage
from bot.core.settings import Settings, reset_settings_cache
from bot.store import content
from tests.channels.conftest import ASHA, add_order, new_service
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for name, value in {"DATABASE_URL": settings.database_url, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_API_BASE_URL": fake_twilio.url,
                        "DOORSTEP_CONFIG": "does-not-exist.yaml"}.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield settings
    reset_settings_cache()


def test_sync_templates_twice_creates_once_and_records_what_whatsapp_says(env: Settings,
                                                                          fake_twilio: FakeTwilio) -> None:
    first = runner.invoke(app, ["whatsapp", "sync-templates", "--json"])
    assert first.exit_code == 0, first.output
    created = json.loads(first.output)
    journeys = [t for t in created["templates"] if t["kind"]]
    assert len(created["created"]) == len(created["templates"]) and len(created["submitted"]) == len(journeys)
    assert {(t["kind"], t["locale"]) for t in journeys} >= {("journey.shipped", "es"), ("journey.reorder", "hi-Latn")}
    fake_twilio.approve("doorstep_shipped_es", category="MARKETING")
    fake_twilio.approve("doorstep_reorder_es", status="rejected", reason="INVALID_FORMAT")
    second = json.loads(runner.invoke(app, ["whatsapp", "sync-templates", "--json"]).output)
    rejected = next(t for t in second["templates"] if t["name"] == "doorstep_reorder_es")
    assert (rejected["status"], rejected["rejection_reason"]) == ("rejected", "INVALID_FORMAT")
    assert second["created"] == [] and second["submitted"] == []
    utility = next(t for t in second["templates"] if t["name"] == "doorstep_shipped_es")
    assert (utility["kind"], utility["locale"], utility["status"], utility["category"],
            utility["requested_category"]) == ("journey.shipped", "es", "approved", "MARKETING", "UTILITY")
    table = runner.invoke(app, ["whatsapp", "sync-templates"])
    assert "MARKETING" in table.output and "(asked" in table.output and AUTH_TOKEN not in table.output
    service = new_service(env)
    with service.db.session() as session:
        assert content.categories(session)["doorstep_shipped_es"] == "marketing"


def test_sync_templates_without_twilio_says_what_is_missing(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "")
    reset_settings_cache()
    result = runner.invoke(app, ["whatsapp", "sync-templates"])
    assert result.exit_code == 1 and "TWILIO_AUTH_TOKEN" in result.output


def test_consent_export_prints_the_ledger(env: Settings) -> None:
    service = new_service(env)
    add_order(service)
    for text in ("STOP", "START"):
        service.handle_inbound(InboundMessage(channel="sms", text=text, phone=ASHA,
                                              provider_message_id=f"t-{uuid.uuid4()}"))
    result = runner.invoke(app, ["consent", "export", "--phone", ASHA])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.output)
    assert exported["opted_out_channels"] == []
    assert [(e["consent"], e["detail"]) for e in exported["events"]] == [("out", "STOP"), ("in", "START")]
    assert runner.invoke(app, ["consent", "export", "--phone", "+14155550999"]).exit_code == 1
    assert runner.invoke(app, ["consent", "export", "--phone", "nonsense"]).exit_code == 2
