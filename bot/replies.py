"""Reply templates: `data/templates/<locale>/*.yml`, rendered with Jinja2.

Flows name a template; only this module turns it into text. A missing key in
the customer's locale falls back to English; a missing English key is a bug
and raises, so tests catch it.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

DATA_DIR = Path(os.environ.get("DOORSTEP_DATA_DIR") or Path(__file__).resolve().parent.parent / "data")
TEMPLATE_DIR = DATA_DIR / "templates"
DEFAULT_LOCALE = "en"

_DAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "es": ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
    "hi-Latn": ["Somvar", "Mangalvar", "Budhvar", "Guruvar", "Shukravar", "Shanivar", "Ravivar"],
}
_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"],
}
WINDOWS = {
    "morning": ("morning", "8 am–12 pm"),
    "afternoon": ("afternoon", "12–4 pm"),
    "evening": ("evening", "4–8 pm"),
}


class TemplateMissing(KeyError):
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


def format_day(value: date | datetime | str | None, locale: str = "en") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    days = _DAYS.get(locale, _DAYS["en"])
    months = _MONTHS.get(locale, _MONTHS["en"])
    return f"{days[value.weekday()]} {value.day} {months[value.month - 1]}"


def format_window(value: str | None) -> str:
    if not value:
        return ""
    if value in WINDOWS:
        name, hours = WINDOWS[value]
        return f"{name} {hours}"
    return value.replace("-", "–")


def _environment(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["day"] = lambda v: format_day(v, locale)
    env.filters["window"] = format_window
    env.filters["money"] = lambda v, cur="": f"{cur} {v}".strip()
    return env


@lru_cache(maxsize=512)
def _compiled(locale: str, key: str) -> jinja2.Template:
    source = _load(locale).get(key)
    if source is None:
        raise TemplateMissing(key)
    return _environment(locale).from_string(source)


def render(key: str, locale: str | None = None, /, **variables: Any) -> str:
    """Render template `key` for `locale` (falling back to English)."""
    loc = normalise_locale(locale)
    try:
        template = _compiled(loc, key)
    except TemplateMissing:
        if loc == DEFAULT_LOCALE:
            raise
        template = _compiled(DEFAULT_LOCALE, key)
    text = template.render(**variables)
    return " ".join(text.split())  # folded YAML + Jinja leave stray spaces


def has_template(key: str, locale: str | None = None) -> bool:
    return key in _load(normalise_locale(locale)) or key in _load(DEFAULT_LOCALE)


def reload() -> None:
    _load.cache_clear()
    _compiled.cache_clear()
