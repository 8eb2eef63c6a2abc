"""Fixtures for the channel tests: fake Twilio and Telegram servers on loopback,
settings pointing the real SDKs at them, and helpers to seed orders and run the
dispatcher. Every store test runs on SQLite and PostgreSQL (the `settings`
fixture of tests/conftest.py is parametrised)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.orders import upsert_order
from tests.fakes.telegram_server import BOT_TOKEN, FakeTelegram
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, WHATSAPP_FROM, FakeTwilio
from tests.support.factories import order_payload

PUBLIC_URL = "https://doorstep.example.com"
TELEGRAM_SECRET = "tg-secret-0123456789_abc"
ASHA = "+919812345678"


_created: list[Service] = []


def new_service(settings: Settings, **kwargs: object) -> Service:
    """Service.create, remembered so its connection pool is closed after the test."""
    service = Service.create(settings, **kwargs)  # type: ignore[arg-type]
    _created.append(service)
    return service


@pytest.fixture(autouse=True)
def _dispose_services() -> Iterator[None]:
    yield
    while _created:
        _created.pop().db.dispose()


def with_channels(settings: Settings, twilio: FakeTwilio | None = None, telegram: FakeTelegram | None = None,
                  **extra: object) -> Settings:
    update: dict[str, object] = {"public_url": PUBLIC_URL}
    if twilio is not None:
        update.update(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=_secret(AUTH_TOKEN), twilio_sms_from=SMS_FROM,
                      twilio_whatsapp_from=WHATSAPP_FROM, twilio_api_base_url=twilio.url, twilio_sms_rate=1000.0,
                      twilio_whatsapp_rate=1000.0)
    if telegram is not None:
        update.update(telegram_bot_token=_secret(BOT_TOKEN), telegram_webhook_secret=_secret(TELEGRAM_SECRET),
                      telegram_api_base_url=telegram.url)
    update.update(extra)
    return settings.model_copy(update=update)


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


class Clock:
    """A controllable clock for the dispatcher (retries, leases, windows)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def add_order(service: Service, **kw: object) -> None:
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(**kw)))  # type: ignore[arg-type]


def drain(dispatcher: Dispatcher, rounds: int = 3) -> int:
    """Run the dispatcher until nothing is due (bounded), then close its senders' connections."""
    async def rounds_then_close() -> int:
        total = 0
        try:
            for _ in range(rounds):
                count = await dispatcher.run_once()
                total += count
                if count == 0:
                    break
        finally:
            await dispatcher.aclose()
        return total

    return asyncio.run(rounds_then_close())
