"""Builders for pure flow tests: an order snapshot and a FlowContext, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from flows.base import CustomerView, FlowContext, OrderView
from intents import Classification, Entity, Intent

NOW = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)  # Mon 23 Nov, 09:00 in Asia/Kolkata
CONFIG: dict[str, Any] = {
    "reschedule": {"max_days_ahead": 7, "non_delivery_weekdays": ["sunday"], "holidays": []},
    "returns": {"window_days": 7, "policy": "Unused items can be returned within 7 days."},
}


def order(**overrides: Any) -> OrderView:
    fields: dict[str, Any] = {
        "order_id": "A1001", "status": "shipped",
        "items": ({"sku": "TS-M", "name": "T-shirt", "qty": 1, "price": "499.00"},),
        "currency": "INR", "total": "499.00", "payment_method": "prepaid",
        "shipping_address": {"line1": "12 MG Road", "line2": "", "landmark": "", "city": "Bengaluru",
                             "postal_code": "560001", "country": "IN"},
        "promised_date": date(2026, 11, 26), "delivery_date": None, "delivery_window": None, "cod_status": None,
        "address_status": "ok", "carrier": "Delhivery", "tracking_number": "DL1",
        "tracking_url": "https://track.example.com/DL1",
    }
    fields.update(overrides)
    return OrderView(**fields)


def ctx(text: str, intent: Intent = Intent.OUT_OF_SCOPE, *entities: tuple[str, Any], orders: tuple[OrderView, ...] = (),
        confidence: float = 0.95, source: str = "model", media: tuple[str, ...] = (),
        config: dict[str, Any] | None = None) -> FlowContext:
    classification = Classification(intent, confidence, tuple(Entity(t, v, str(v)) for t, v in entities), "en", source)
    return FlowContext(text=text, classification=classification, customer=CustomerView(1, "Asha", "en", "sms"),
                       orders=orders, now=NOW, timezone="Asia/Kolkata", channel="console",
                       config=CONFIG if config is None else config, media_urls=media)
