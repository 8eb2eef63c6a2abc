"""The send planner's decisions (bot.core.planner), pure: channel, form, price and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.planner import Recipient, Situation, plan, price
from bot.core.shopconfig import DEFAULTS

PRICING = DEFAULTS["messaging"]["pricing"]
INDIA_WHATSAPP = Recipient(country="IN", has_phone=True, telegram=False, whatsapp=True, opted_out=frozenset(),
                           preferred="whatsapp")


def situation(**kw: object) -> Situation:
    base: dict[str, object] = {"channel": "whatsapp", "category": "utility", "reply": False,
                               "whatsapp_window_open": False, "template_category": "utility"}
    return Situation(**{**base, **kw})  # type: ignore[arg-type]


def test_a_reply_inside_the_window_is_a_session_message_costing_only_the_provider_fee() -> None:
    decided = plan(INDIA_WHATSAPP, situation(reply=True, whatsapp_window_open=True), PRICING)
    assert (decided.channel, decided.form, decided.price) == ("whatsapp", "session", PRICING["whatsapp_fee"])
    assert "24-hour window" in decided.reason


def test_outside_the_window_an_approved_utility_template_at_the_country_rate() -> None:
    decided = plan(INDIA_WHATSAPP, situation(), PRICING)
    assert (decided.form, decided.category) == ("template", "utility")
    assert decided.price == pytest.approx(PRICING["whatsapp_fee"] + PRICING["whatsapp"]["IN"]["utility"])


def test_a_template_whatsapp_refiled_as_marketing_is_priced_as_marketing() -> None:
    decided = plan(INDIA_WHATSAPP, situation(template_category="marketing"), PRICING)
    assert decided.category == "marketing" and "files it as marketing" in decided.reason
    assert decided.price == pytest.approx(PRICING["whatsapp_fee"] + PRICING["whatsapp"]["IN"]["marketing"])


def test_no_approved_template_goes_by_sms_and_says_why() -> None:
    decided = plan(INDIA_WHATSAPP, situation(template_category=None), PRICING)
    assert (decided.channel, decided.form) == ("sms", "session") and "no approved template" in decided.reason
    assert decided.price == PRICING["sms"]["IN"]


def test_a_price_limit_picks_the_cheaper_sms_and_unknown_countries_use_the_default_rate() -> None:
    def usa(limit: float) -> str:
        us = Recipient(country="US", has_phone=True, telegram=False, whatsapp=True, opted_out=frozenset(),
                       preferred="whatsapp")
        decided = plan(us, situation(category="marketing", template_category="marketing"), PRICING, max_price=limit)
        return f"{decided.channel}: {decided.reason}"

    assert usa(0.02).startswith("sms: a WhatsApp template would cost 0.0300, over the 0.0200 limit")
    assert usa(0.05).startswith("whatsapp")
    assert price(PRICING, "sms", "session", "utility", "ZW") == PRICING["sms"]["*"]


def test_an_opt_out_is_never_worked_around_and_quiet_hours_are_in_the_reason() -> None:
    stopped = Recipient(country="IN", has_phone=True, telegram=True, whatsapp=True, opted_out=frozenset({"sms"}),
                        preferred="sms")
    assert plan(stopped, situation(channel="sms"), PRICING).form == "none"
    later = datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
    decided = plan(INDIA_WHATSAPP, situation(whatsapp_window_open=True, quiet_until=later), PRICING)
    assert "quiet hours: waits until 02:30" in decided.reason
