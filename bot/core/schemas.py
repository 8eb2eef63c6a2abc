"""Request and response models of the HTTP API (separate from the tables).

Field names are the contract of DESIGN.md's order JSON; never rename them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.core.phones import InvalidPhone, to_e164
from bot.core.urls import is_web_url

Channel = Literal["sms", "whatsapp", "telegram", "console", "email", "viber"]
PaymentMethod = Literal["cod", "prepaid"]
EventType = Literal[
    "confirmed", "packed", "shipped", "out_for_delivery", "delayed",
    "failed_attempt", "delivered", "returned", "cancelled",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerIn(_Strict):
    name: str = Field("", max_length=200)
    phone: str = Field(..., max_length=32, description="Any format; stored as E.164")
    telegram_chat_id: str | None = Field(None, max_length=32, description="a number or a string; stored as a string")
    locale: str = Field("en", pattern=r"^(en|es|hi-Latn|hi)$")
    channel: Channel = "sms"
    email: str | None = Field(None, max_length=254, description="order records and replies by email (optional)")

    @field_validator("phone")
    @classmethod
    def _phone_e164(cls, value: str) -> str:
        try:
            return to_e164(value)
        except InvalidPhone as exc:
            raise ValueError(str(exc)) from None

    @field_validator("email")
    @classmethod
    def _email_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        from email.errors import HeaderParseError
        from email.headerregistry import Address

        value = value.strip()
        try:
            address = Address(addr_spec=value)
        except (HeaderParseError, ValueError, IndexError):
            raise ValueError("not an email address") from None
        if not address.username or "." not in address.domain or address.addr_spec != value:
            raise ValueError("not an email address")
        return value

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _chat_id_str(cls, value: str | int | None) -> str | None:
        return None if value in (None, "") else str(value)


class ItemIn(_Strict):
    sku: str = Field(..., min_length=1, max_length=64)
    name: str = Field(..., min_length=1, max_length=200)
    qty: int = Field(1, ge=1, le=10_000)
    price: Decimal = Field(Decimal("0"), ge=0, max_digits=12, decimal_places=2)
    consumable_days: int | None = Field(None, ge=1, le=365, description="reorder reminder after N days (optional)")


class AddressIn(_Strict):
    line1: str = Field("", max_length=300)
    line2: str = Field("", max_length=300)
    landmark: str = Field("", max_length=200)
    city: str = Field("", max_length=100)
    postal_code: str = Field("", max_length=16)
    country: str = Field("IN", min_length=2, max_length=2)

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class OrderIn(_Strict):
    order_id: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-#./]*$")
    customer: CustomerIn
    items: list[ItemIn] = Field(default_factory=list, max_length=200)
    currency: str = Field("INR", min_length=3, max_length=3)
    total: Decimal = Field(Decimal("0"), ge=0, max_digits=12, decimal_places=2)
    payment_method: PaymentMethod = "prepaid"
    shipping_address: AddressIn = Field(default_factory=AddressIn)
    promised_date: date | None = None
    carrier: str = Field("", max_length=100)
    tracking_number: str = Field("", max_length=100)
    tracking_url: str = Field("", max_length=500)
    address_status: Literal["ok", "needs_clarification", "updated"] | None = None

    @field_validator("tracking_url")
    @classmethod
    def _web_link(cls, value: str) -> str:
        # Sent to customers and rendered as a link in the inbox: a javascript: or data: URL never is.
        value = value.strip()
        if value and not is_web_url(value):
            raise ValueError("must be an http:// or https:// URL")
        return value


class CustomerOut(BaseModel):
    name: str
    phone: str | None
    telegram_chat_id: str | None
    locale: str
    channel: str
    email: str | None = None


class HoldoutOut(BaseModel):
    """The order's holdout groups (bot.core.holdout), fixed when it was created."""

    group: Literal["treatment", "holdout"] | None = Field(
        None, description="global group; null when no experiment ran when the order was created")
    journeys: dict[str, Literal["treatment", "holdout"]] = Field(
        default_factory=dict, description="arm of each journey measured on its own")


class OrderOut(BaseModel):
    order_id: str
    customer: CustomerOut
    items: list[dict[str, Any]]
    currency: str
    total: str
    payment_method: str
    shipping_address: dict[str, Any]
    promised_date: date | None
    carrier: str
    tracking_number: str
    tracking_url: str
    status: str
    delivery_date: date | None
    delivery_window: str | None
    cod_status: str | None
    address_status: str
    eta: date | None
    created_at: datetime
    updated_at: datetime
    holdout: HoldoutOut = Field(default_factory=HoldoutOut,
                                description="holdout groups: a held-out order gets no proactive message of that journey")


class OrderEventIn(_Strict):
    type: EventType
    at: datetime | None = Field(None, description="ISO-8601; defaults to now")
    eta: date | None = None
    note: str | None = Field(None, max_length=2000)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a timezone offset, e.g. 2026-11-25T10:00:00+05:30")
        return value


class OrderEventOut(BaseModel):
    order_id: str
    type: str
    at: datetime
    status: str
    duplicate: bool = False
