"""Replies leaked English defaults and stored codes into other languages.

- the default shop name "our shop" (and "our support team") reached Hinglish and Spanish customers;
- raw codes reached customers: "Your order A1001 is cancel requested";
- money was "INR 499.00" / "45.00 EUR" in every language, and dates never showed the year.

Money and dates now follow the customer's language (Babel/CLDR); the year is shown only when the
date is not in the current year of the runtime clock, where the customer is.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.core.models import Customer
from bot.core.runtime import Runtime
from bot.core.settings import Settings
from bot.core.shopconfig import load_shop_config
from bot.store.conversations import render_reply
from flows.base import Reply
from tests.channels.conftest import new_service
from tests.flows.support import order


def _runtime(now: datetime = datetime(2026, 11, 23, 4, 0, tzinfo=UTC), **shop: str) -> Runtime:
    return Runtime(timezone="Asia/Kolkata", shop_config=load_shop_config(None, overrides=shop or None),
                   clock=lambda: now)


def _say(template: str, locale: str, runtime: Runtime | None = None, **variables: object) -> str:
    return render_reply(Reply(template, variables), customer=Customer(name="Ana Ruiz", locale=locale),
                        runtime=runtime or _runtime())


@pytest.mark.parametrize(("locale", "shop", "support"), [
    ("en", "our shop", "our support team"),
    ("es", "nuestra tienda", "nuestro equipo de atención al cliente"),
    ("hi-Latn", "humari shop", "humari support team"),
])
def test_the_default_shop_name_is_in_the_customers_language(locale: str, shop: str, support: str) -> None:
    text = _say("channels.help", locale)
    assert shop in text.lower() and support in text
    if locale != "en":
        assert "our shop" not in text and "our support team" not in text


def test_a_configured_shop_name_is_used_in_every_language(settings: Settings) -> None:
    service = new_service(settings.model_copy(update={"shop_name": "Chai Co"}), migrate=False)
    for locale in ("en", "es", "hi-Latn"):
        assert "Chai Co" in _say("journey.feedback", locale, service.runtime)


def test_the_default_return_policy_is_in_the_customers_language() -> None:
    text = _say("returns.not_delivered", "es", order=order(status="shipped"), policy="", window_days=14)
    assert "Unused items" not in text and "14 días" in text


@pytest.mark.parametrize(("locale", "words"), [
    ("en", "is being cancelled"), ("es", "en proceso de cancelación"), ("hi-Latn", "cancel hone ki process mein"),
])
def test_an_order_status_is_said_in_words(locale: str, words: str) -> None:
    text = _say("reschedule.not_possible", locale, order=order(status="cancel_requested"))
    assert words in text
    assert "cancel requested" not in text and "cancel_requested" not in text


def test_a_delivery_window_is_in_the_customers_language() -> None:
    text = _say("journey.out_for_delivery", "es", order=order(status="out_for_delivery", delivery_window="evening"))
    assert "por la tarde-noche (16-20 h)" in text and "evening" not in text


@pytest.mark.parametrize(("locale", "currency", "total", "expected"), [
    ("es", "EUR", "45.00", "45,00 €"),
    ("en", "INR", "499.00", "Rs. 499.00"),
    ("hi-Latn", "INR", "124999.50", "Rs. 1,24,999.50"),
    ("en", "EUR", "45.00", "€45.00"),
])
def test_money_is_formatted_for_the_customers_language(locale: str, currency: str, total: str, expected: str) -> None:
    text = _say("cod.ask", locale, order=order(currency=currency, total=total), items="Taza")
    assert expected in text


@pytest.mark.parametrize(("locale", "this_year", "next_year"), [
    ("en", "Sat, 28 Nov", "Mon, 4 Jan 2027"),
    ("es", "sáb, 28 nov", "lun, 4 ene 2027"),
    ("hi-Latn", "Shani, 28 Nov", "Som, 4 Jan 2027"),
])
def test_a_date_shows_its_year_only_when_it_is_not_this_year(locale: str, this_year: str, next_year: str) -> None:
    assert this_year in _say("reschedule.read_back", locale, order=order(), date=date(2026, 11, 28), window=None)
    assert next_year in _say("reschedule.read_back", locale, order=order(), date=date(2027, 1, 4), window=None)


def test_this_year_is_the_runtime_clocks_where_the_customer_is() -> None:
    # 20:00 UTC on 31 Dec 2026 is already 1 Jan 2027 in Kolkata: a January date needs no year there.
    new_year = _runtime(datetime(2026, 12, 31, 20, 0, tzinfo=UTC))
    text = _say("reschedule.read_back", "en", new_year, order=order(), date=date(2027, 1, 4), window=None)
    assert "Mon, 4 Jan?" in text
    text = _say("reschedule.read_back", "en", new_year, order=order(), date=date(2026, 12, 31), window=None)
    assert "Thu, 31 Dec 2026" in text
