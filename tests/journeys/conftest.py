"""Journeys test kit: a service on a time-travel clock, the real API in-process,
and a recording sender handed to the real dispatcher (its `senders` argument)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.app import create_app
from bot.core.channels import OutboundMessage, Receipt
from bot.core.clock import FakeClock
from bot.core.models import Message
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.support.factories import order_payload

IST = ZoneInfo("Asia/Kolkata")  # the test settings' DOORSTEP_TIMEZONE


def ist(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in Kolkata on 2026-11-<day>, as aware UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=IST).astimezone(UTC)


@dataclass
class Sent:
    channel: str
    to: str
    text: str
    kind: str
    at: datetime


@dataclass
class Recorder:
    """Stands in for the provider: accepts every message and remembers it."""

    clock: FakeClock
    sent: list[Sent] = field(default_factory=list)

    async def send(self, message: OutboundMessage) -> Receipt:
        self.sent.append(Sent(message.channel, message.to, message.text, message.kind, self.clock()))
        return Receipt(provider_id=f"rec-{uuid.uuid4().hex}")


@dataclass
class Kit:
    service: Service
    clock: FakeClock
    client: TestClient
    auth: dict[str, str]
    recorder: Recorder

    def post_order(self, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/api/orders", json=order_payload(**overrides), headers=self.auth)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def event(self, order_id: str, type_: str, expect: int = 201, **body: Any) -> dict[str, Any]:
        payload = {"type": type_, "at": self.clock().isoformat(), **body}
        response = self.client.post(f"/api/orders/{order_id}/events", json=payload, headers=self.auth)
        assert response.status_code == expect, response.text
        return dict(response.json())

    def log(self, order_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/orders/{order_id}/messages", headers=self.auth)
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def dispatcher(self) -> Dispatcher:
        senders = {f"message:{c}": self.recorder for c in ("sms", "whatsapp", "telegram", "console")}
        return Dispatcher(self.service.db, self.service.settings, clock=self.clock, senders=senders,  # type: ignore[arg-type]
                          kinds=("message",))

    def run_until(self, when: datetime, step: timedelta = timedelta(minutes=15)) -> None:
        """Advance the clock to `when` in steps, ticking timers and the dispatcher like `serve` does."""
        dispatcher = self.dispatcher()
        while True:
            self.service.journeys.run_due_timers()
            while asyncio.run(dispatcher.run_once_and_close()):
                pass
            if self.clock() >= when:
                return
            self.clock.advance(min(step, when - self.clock()))

    def outbound(self) -> list[Message]:
        with self.service.db.session() as session:
            return list(session.exec(select(Message).where(Message.direction == "out").order_by(col(Message.id))))


def make_kit(settings: Settings, auth: dict[str, str], start: datetime, **shop: Any) -> Kit:
    clock = FakeClock(start)
    service = Service.create(settings, clock=clock, shop_overrides=shop or None)
    client = TestClient(create_app(service=service))
    return Kit(service, clock, client, auth, Recorder(clock))


@pytest.fixture
def kit(settings: Settings, auth: dict[str, str]) -> Iterator[Kit]:
    """Starts on Mon 23 Nov 2026, 10:00 in Kolkata."""
    made = make_kit(settings, auth, ist(23, 10))
    with made.client:
        yield made
    made.service.db.dispose()
