"""Reply templates: `data/templates/<locale>/*.yml`, rendered with Jinja2.

Flows name a template; only this module turns it into text. A missing key in
the customer's locale falls back to English; a missing English key is a bug
and raises, so tests catch it.

Everything that is not fixed wording is formatted here for the customer's
language: dates and money through Babel (CLDR), stored codes (order status,
delivery window) through `words.yml`, and empty shop settings through the
locale's `shop.default_*` wording. Rendered text stays GSM-7 where the language
allows (see bot/core/gsm7.py); this module never sends and never reads the clock:
callers pass `today` from the runtime clock.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from babel import Locale, dates, numbers

from bot.core.gsm7 import sms_text
from intents.errors import DoorstepError

DATA_DIR = Path(os.environ.get("DOORSTEP_DATA_DIR") or Path(__file__).resolve().parents[2] / "data")
TEMPLATE_DIR = DATA_DIR / "templates"
DEFAULT_LOCALE = "en"

# Babel locale per template locale: numbers, currencies, dates and day names come from CLDR.
# English is formatted as English (India), the shop's home market (lakh grouping for rupees).
BABEL_LOCALES = {"en": "en_IN", "es": "es_ES", "hi-Latn": "hi_Latn"}
# Shop settings left empty take the customer's language's wording from these templates,
# so a Spanish customer never reads "our shop".
SHOP_DEFAULTS = {
    "shop_name": "shop.default_name",
    "support_contact": "shop.default_support_contact",
    "policy": "shop.default_return_policy",
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TODAY = "_doorstep_today"  # context key: the runtime clock's date, for the `day` filter

class TemplateMissing(DoorstepError, KeyError):
    pass


def normalise_locale(locale: str | None) -> str:
    if not locale:
        return DEFAULT_LOCALE
    if locale in {"hi", "hi-Latn", "hinglish"}:
        return "hi-Latn"
    return locale.split("-")[0].split("_")[0].lower() if locale != "hi-Latn" else locale


@lru_cache(maxsize=16)
def _load(locale: str) -> dict[str, str]:
    """Merge every `data/templates/<locale>/*.yml` (one file per part of the bot)."""
    merged: dict[str, str] = {}
    for path in sorted((TEMPLATE_DIR / locale).glob("*.yml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, value in loaded.items():
            if str(key) in merged:
                raise ValueError(f"{path}: template {key!r} is defined twice for locale {locale}")
            merged[str(key)] = str(value)
    return merged


def babel_locale(locale: str | None) -> str:
    return BABEL_LOCALES.get(normalise_locale(locale), BABEL_LOCALES[DEFAULT_LOCALE])


def as_date(value: date | datetime | str) -> date:
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    return value


def format_day(value: date | datetime | str | None, locale: str = "en", today: date | None = None) -> str:
    """`Sat, 28 Nov` (`sáb, 28 nov`, `Shani, 28 Nov`); the year only when it is not `today`'s.

    Without `today` the year is always shown: unambiguous beats guessing the clock.
    """
    if value is None or value == "":
        return ""
    day = as_date(value)
    return _day_text("MMMEd" if today is not None and day.year == today.year else "yMMMEd", day, babel_locale(locale))


@lru_cache(maxsize=1024)
def _day_text(skeleton: str, day: date, locale: str) -> str:
    """CLDR's form of `day` (babel matches the skeleton to the locale's patterns on every call: kept, as
    replies name the same few days over and over)."""
    return sms_text(dates.format_skeleton(skeleton, day, locale=locale))


def format_money(amount: Any, currency: str | None, locale: str = "en") -> str:
    """`Rs. 499.00` (en, hi-Latn), `45,00 €` (es): CLDR's pattern for the customer's language."""
    try:
        number = Decimal(str(amount))
    except InvalidOperation:
        return f"{currency or ''} {amount}".strip()
    loc = babel_locale(locale)
    text = numbers.format_currency(number, currency.upper(), locale=loc) if currency \
        else numbers.format_decimal(number, locale=loc)
    return sms_text(text)  # no-break spaces and the rupee sign have no GSM-7 form


def format_weekday(name: str, locale: str = "en") -> str:
    """An English weekday name from the shop config ("sunday") in the customer's language."""
    key = str(name).strip().lower()
    if key not in WEEKDAYS:
        return str(name)
    days = Locale.parse(babel_locale(locale)).days["format"]["wide"]
    return str(days[WEEKDAYS.index(key)])


def _coded(prefix: str, value: Any, locale: str) -> str:
    """A stored code (`cancel_requested`, `evening`) as the words of `<prefix>.<code>` in `locale`."""
    if value is None or value == "":
        return ""
    key = f"{prefix}.{value}"
    if has_template(key, locale):
        return render(key, locale)
    return str(value).replace("_", " ")  # a test keeps every known code translated


def format_window(value: str | None, locale: str = "en") -> str:
    """A named delivery window in words (`evening, 4-8 pm`); an exact range stays `14:00-16:00`."""
    if not value:
        return ""
    if has_template(f"window.{value}", locale):
        return _coded("window", value, locale)
    return sms_text(value)


def _today(context: Any) -> date | None:
    value = context.get(_TODAY)
    return value if isinstance(value, date) else None


def _environment(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["day"] = jinja2.pass_context(lambda ctx, v: format_day(v, locale, _today(ctx)))
    env.filters["window"] = lambda v: format_window(v, locale)
    env.filters["money"] = lambda v, cur="": format_money(v, cur, locale)
    env.filters["status"] = lambda v: _coded("status", v, locale)
    env.filters["weekday"] = lambda v: format_weekday(v, locale)
    # Jinja's `capitalize` lowercases the rest ("Call Priya" -> "Call priya"): only the first letter.
    env.filters["upper_first"] = lambda v: str(v)[:1].upper() + str(v)[1:]
    return env


@lru_cache(maxsize=512)
def _compiled(locale: str, key: str) -> jinja2.Template:
    source = _load(locale).get(key)
    if source is None:
        raise TemplateMissing(key)
    return _environment(locale).from_string(source)


@lru_cache(maxsize=512)
def _static(locale: str, key: str) -> str | None:
    """The text of a template with no Jinja in it ("our shop", the shop defaults `render` fills in for
    every reply of a shop that left them empty): rendering it changes nothing but the spacing."""
    source = _load(locale).get(key)
    return None if source is None or "{" in source else " ".join(source.split())


def _shop_defaults(locale: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Fill empty shop settings (shop name, support contact, return policy) with the locale's wording."""
    filled = dict(variables)
    for name, key in SHOP_DEFAULTS.items():
        if name in filled and not filled[name]:
            filled[name] = render(key, locale, **{k: v for k, v in filled.items() if k not in SHOP_DEFAULTS})
    return filled


def render(key: str, locale: str | None = None, /, *, today: date | None = None, **variables: Any) -> str:
    """Render template `key` for `locale` (falling back to English).

    `today` is the runtime clock's local date: a date in another year is shown with its year.
    """
    loc = normalise_locale(locale)
    if (static := _static(loc, key)) is not None:
        return static
    try:
        template = _compiled(loc, key)
    except TemplateMissing:
        if loc == DEFAULT_LOCALE:
            raise
        template = _compiled(DEFAULT_LOCALE, key)
    text = template.render(**_shop_defaults(loc, variables), **{_TODAY: today})
    return " ".join(text.split())  # folded YAML + Jinja leave stray spaces


@lru_cache(maxsize=256)
def _compiled_source(locale: str, source: str) -> jinja2.Template:
    return _environment(locale).from_string(source)


def render_source(source: str, locale: str | None = None, /, *, today: date | None = None, **variables: Any) -> str:
    """Render a Jinja snippet (not a template key) with the same filters and shop defaults as `render`."""
    loc = normalise_locale(locale)
    return _compiled_source(loc, source).render(**_shop_defaults(loc, variables), **{_TODAY: today})


def has_template(key: str, locale: str | None = None) -> bool:
    return key in _load(normalise_locale(locale)) or key in _load(DEFAULT_LOCALE)


def reload() -> None:
    _load.cache_clear()
    _compiled.cache_clear()
    _compiled_source.cache_clear()
