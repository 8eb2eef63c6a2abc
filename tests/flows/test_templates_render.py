"""Every flow and core template renders in every locale with realistic order data, within 320 characters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from bot.core import replies
from bot.core.shopconfig import DEFAULTS
from tests.flows.support import order

TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "templates"
KEYS = sorted(set(yaml.safe_load((TEMPLATES / "en" / "core.yml").read_text(encoding="utf-8")))
              | set(yaml.safe_load((TEMPLATES / "en" / "flows.yml").read_text(encoding="utf-8"))))
LONG_ORDER = order(
    order_id="SHOP-2026-000123", status="delivered", delivery_window="evening",
    items=({"name": "Wireless headphones", "qty": 1}, {"name": "Coffee mug", "qty": 2}),
    delivered_at=datetime(2026, 11, 21, 10, tzinfo=UTC), delivery_date=date(2026, 11, 28),
    tracking_url="https://track.example.com/DL123456789", carrier="Delhivery Express",
)
VARIABLES = {
    "shop_name": "Doorstep Demo Shop", "support_contact": "our support team", "customer_name": "Asha",
    "order": LONG_ORDER, "items": LONG_ORDER.item_names, "expected": date(2026, 11, 28),
    "orders": (LONG_ORDER, order(order_id="SHOP-2026-000124")), "date": date(2026, 11, 28), "window": "14:00-16:00",
    "latest": date(2026, 11, 30), "max_days": 7, "closed": ["Sunday"],
    "address": "Flat 4B, Sai Residency, Floor 3, 12 MG Road, near Trinity metro, Bengaluru 560001",
    "policy": DEFAULTS["returns"]["policy"], "late": True, "window_days": 7, "photo": True, "has_orders": True,
    "text": "x", "ruled_out": [date(2026, 11, 27), date(2026, 11, 28)],
    "next_days": [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)], "ref": "SHOP-2026-009999",
    "instructions": "it's a gated community, the code is 4411; please call before you come up to the 3rd floor",
        "labels": ["Sat, 28 Nov", "Mon, 30 Nov", "Tue, 1 Dec"],
}


@pytest.mark.parametrize("locale", ["en", "es", "hi-Latn"])
@pytest.mark.parametrize("key", KEYS)
def test_template_renders_briefly(key: str, locale: str) -> None:
    text = replies.render(key, locale, **VARIABLES)
    assert text.strip(), key
    assert len(text) <= 320, f"{locale} {key}: {len(text)} characters: {text}"
    assert "{{" not in text and "{%" not in text
