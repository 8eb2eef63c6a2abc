"""Builders for test data shaped exactly like the API's order JSON (DESIGN.md)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any


def order_payload(order_id: str = "A1001", phone: str = "+919812345678", **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": order_id,
        "customer": {"name": "Asha", "phone": phone, "telegram_chat_id": None, "locale": "en", "channel": "sms"},
        "items": [{"sku": "TS-M", "name": "T-shirt", "qty": 1, "price": "499.00"}],
        "currency": "INR",
        "total": "499.00",
        "payment_method": "prepaid",
        "shipping_address": {"line1": "12 MG Road", "line2": "", "landmark": "", "city": "Bengaluru",
                             "postal_code": "560001", "country": "IN"},
        "promised_date": (date.today() + timedelta(days=3)).isoformat(),
        "carrier": "Delhivery",
        "tracking_number": "DL123",
        "tracking_url": "https://track.example.com/DL123",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    return payload
