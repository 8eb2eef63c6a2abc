"""Every reply template, in every locale, renders to SMS-ready text in the customer's language.

- GSM-7 only (160 characters a part, not UCS-2's 70), except the Spanish accented vowels
  that are not in GSM-7 (á, í, ó, ú): Spanish text stays correctly spelt (docs/conversations.md).
- No stored code reaches the customer: every order status and delivery window is in words in
  every locale, and no template prints such a value without the filter that translates it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2 import nodes

from bot.core import replies
from bot.core.gsm7 import non_gsm7
from bot.store.orders import ALLOWED_FROM
from flows.base import OrderView
from flows.reschedule import DEFAULT_WINDOWS
from tests.flows.support import order

TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "templates"
LOCALES = sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())
KEYS = sorted({str(k) for path in (TEMPLATES / "en").glob("*.yml")
               for k in (yaml.safe_load(path.read_text(encoding="utf-8")) or {})})
ORDER_STATUSES = sorted(set(ALLOWED_FROM) | {s for before in ALLOWED_FROM.values() for s in before})
WINDOWS = [None, *DEFAULT_WINDOWS, "14:00-16:00"]
# Spanish needs these for correct spelling and GSM-7 lacks them (it has é, ñ, ü, ¿, ¡, É, Ñ, Ü).
SPANISH_ONLY_UCS2 = set("áíóúÁÍÓÚ")
TODAY = date(2026, 11, 23)
NOT_SMS = ("email.", "voice.")  # an email's words and a call's spoken ones never go out as an SMS


def _variants() -> list[OrderView]:
    """One order per status, cycling delivery windows, payment and currency (INR and EUR)."""
    out = []
    for i, status in enumerate(ORDER_STATUSES):
        cod = i % 2 == 0
        out.append(order(
            order_id=f"SHOP-2026-{i:06d}", status=status, delivery_window=WINDOWS[i % len(WINDOWS)],
            items=({"name": "Wireless headphones", "qty": 1}, {"name": "Coffee mug", "qty": 2}),
            currency="INR" if cod else "EUR", total="124999.50" if cod else "45.00",
            payment_method="cod" if cod else "prepaid", cod_status="pending" if cod else None,
            delivered_at=datetime(2026, 11, 21, 10, tzinfo=UTC), delivery_date=date(2027, 1, 4) if i % 3 else None,
            carrier="Delhivery Express", tracking_url="https://track.example.com/DL123456789",
        ))
    return out


VARIANTS = _variants()


def _variables(o: OrderView) -> dict[str, Any]:
    return {
        "shop_name": "", "support_contact": "", "customer_name": "Asha", "order": o, "items": o.item_names,
        "expected": o.expected_date, "orders": (o, order(order_id="SHOP-2026-000124")), "date": date(2026, 11, 28),
        "window": o.delivery_window, "latest": date(2026, 11, 30), "max_days": 7, "closed": ["Sunday", "Saturday"],
        "address": "Flat 4B, Sai Residency, Floor 3, 12 MG Road, near Trinity metro, Bengaluru 560001",
        "policy": "", "late": True, "window_days": 7, "photo": True, "has_orders": True, "text": "Thanks!",
        "ruled_out": [date(2026, 11, 27), date(2027, 1, 2)], "ref": "SHOP-2026-009999",
        "next_days": [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)],
        "instructions": "it's a gated community, the code is 4411; please call before you come up",
        "deep_link": "https://t.me/doorstep_bot?start=abc123", "review_link": "https://g.page/r/shop/review",
        "item": {"name": "Coffee mug"}, "score": 4, "name": "Asha", "order_id": o.order_id,
        "options": "Yes, No",
        "labels": ["Sat, 28 Nov", "Mon, 30 Nov", "Tue, 1 Dec"],
    }


def _rendered(locale: str) -> list[tuple[str, str]]:
    return [(key, replies.render(key, locale, today=TODAY, **_variables(o))) for o in VARIANTS for key in KEYS]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_template_renders_to_gsm7_sms_text(locale: str) -> None:
    allowed = SPANISH_ONLY_UCS2 if locale == "es" else set()
    bad = {key: "".join(chars) for key, text in _rendered(locale)
           if not key.startswith(NOT_SMS) and (chars := [c for c in non_gsm7(text) if c not in allowed])}
    assert not bad, f"{locale}: characters that force UCS-2 (twice the cost per SMS): {bad}"


@pytest.mark.parametrize("locale", LOCALES)
def test_no_stored_code_reaches_the_customer(locale: str) -> None:
    codes = [c for c in (*ORDER_STATUSES, *DEFAULT_WINDOWS) if "_" in c]
    leaks = {key: text for key, text in _rendered(locale) for code in codes if code in text}
    assert not leaks, f"{locale}: raw codes in replies: {leaks}"
    if locale != "en":  # and no English words for them either
        english = [replies.render(f"window.{w}", "en").split()[0] for w in DEFAULT_WINDOWS]
        leaks = {key: text for key, text in _rendered(locale) for word in english if f" {word}" in text}
        assert not leaks, f"{locale}: English window names in replies: {leaks}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_status_and_window_has_words_in_every_locale(locale: str) -> None:
    words = {}
    for path in (TEMPLATES / locale).glob("*.yml"):
        words.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    missing = [f"status.{s}" for s in ORDER_STATUSES if f"status.{s}" not in words]
    missing += [f"window.{w}" for w in DEFAULT_WINDOWS if f"window.{w}" not in words]
    missing += [key for key in replies.SHOP_DEFAULTS.values() if key not in words]
    assert not missing, f"{locale} lacks {missing}"


# Order fields and flow variables that hold codes, and the filters that turn them into words.
CODE_ATTRIBUTES = {"status", "delivery_window", "cod_status", "address_status", "payment_method", "currency"}
CODE_NAMES = {"window", "closed"}
LOCALISING_FILTERS = {"status", "window", "weekday", "money"}


def _unlocalised(node: nodes.Node, localised: bool = False) -> list[str]:
    """Code-valued expressions printed without a localising filter around them."""
    if isinstance(node, nodes.Compare):
        return []  # `order.payment_method == "cod"` prints nothing
    if isinstance(node, nodes.Filter):
        mapped = (node.name == "map" and node.args and isinstance(node.args[0], nodes.Const)
                  and node.args[0].value in LOCALISING_FILTERS)
        localised = localised or node.name in LOCALISING_FILTERS or bool(mapped)
    if isinstance(node, nodes.Getattr) and node.attr in CODE_ATTRIBUTES and not localised:
        return [f"{node.attr}"]
    if isinstance(node, nodes.Name) and node.name in CODE_NAMES and node.ctx == "load" and not localised:
        return [node.name]
    found: list[str] = []
    for child in node.iter_child_nodes():
        found += _unlocalised(child, localised)
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_no_template_prints_a_code_without_its_filter(locale: str) -> None:
    env = jinja2.Environment()
    bad: dict[str, list[str]] = {}
    for path in (TEMPLATES / locale).glob("*.yml"):
        for key, source in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
            tree = env.parse(str(source))
            for output in tree.find_all(nodes.Output):
                for expr in output.nodes:
                    if not isinstance(expr, nodes.TemplateData) and (found := _unlocalised(expr)):
                        bad.setdefault(f"{path.name}:{key}", []).extend(found)
    assert not bad, f"{locale}: codes printed as they are stored: {bad}"
