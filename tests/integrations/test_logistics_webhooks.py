"""Logistics webhooks out: signed per Standard Webhooks, retried on the documented
schedule with the same webhook-id, dead-lettered and redeliverable; on SQLite and PostgreSQL.

The receiver is a real HTTP server on loopback that verifies with the reference
`standardwebhooks` library; the dispatcher and sender are the production ones.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from bot.core.clock import system_clock
from bot.core.models import LogisticsEvent, Outbox
from bot.core.schemas import OrderIn
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store.orders import upsert_order
from bot.store.outbox import emit_event
from tests.fakes.logistics_receiver import LogisticsReceiver
from tests.support.factories import order_payload
from tests.support.server import DOORSTEP

SECRET = "whsec_" + base64.b64encode(b"doorstep-test-logistics-secret!!").decode()


class Clock:
    """The dispatcher's clock, moved by hand so a 24-hour backoff takes no time."""

    def __init__(self) -> None:
        # Made after the test's events are emitted, so they are due at once however long that took
        # (a clock made first and set 2 s ahead missed an event a loaded CI machine took longer to store).
        self.now = system_clock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[LogisticsReceiver]:
    fake = LogisticsReceiver(secret=SECRET).start()
    yield fake
    fake.stop()


def _configured(settings: Settings, url: str, *, allow_private: bool = True) -> Settings:
    return settings.model_copy(update={"logistics_webhook_url": url, "logistics_webhook_secret": type(
        settings.logistics_webhook_secret)(SECRET), "logistics_allow_private": allow_private})


def _emit(service: Service, type_: str = "delivery.rescheduled", **data: object) -> str:
    with service.db.session() as session:
        order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
        session.flush()
        event = emit_event(session=session, type_=type_, order_id=order.order_id, order_pk=order.id,
                           data={"delivery_date": "2026-11-28", **data})
        return event.id


def _outbox(service: Service, event_id: str) -> Outbox:
    with service.db.session() as session:
        return session.exec(select(Outbox).where(Outbox.event_id == event_id)).one()


def test_event_arrives_signed_on_commit_not_at_the_next_poll(make_service: Callable[..., Service], settings: Settings, receiver: LogisticsReceiver) -> None:
    """The idle dispatcher polls only every 30 s here: the event arrives because the commit wakes it."""
    settings = _configured(settings, receiver.url)
    service = make_service(settings)
    dispatcher = Dispatcher(service.db, settings)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run_forever(stop, idle_sleep=30.0))
        await asyncio.sleep(0.2)  # the dispatcher is idle, as in `doorstep serve`
        event_id = await asyncio.to_thread(_emit, service)
        deliveries = await asyncio.to_thread(receiver.wait_for, 1, 10.0)
        stop.set()
        await task
        assert deliveries and deliveries[0].webhook_id == event_id

    asyncio.run(scenario())
    delivery = receiver.deliveries[0]
    assert delivery.verified, "the reference library must accept the signature"
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.payload is not None
    assert delivery.payload["type"] == "delivery.rescheduled"
    assert delivery.payload["data"] == {"order_id": "A1001", "delivery_date": "2026-11-28"}
    assert delivery.payload["id"] == delivery.webhook_id
    assert _outbox(service, delivery.webhook_id).status == "sent"


def test_endpoint_down_then_back_gets_the_same_event_once(make_service: Callable[..., Service], settings: Settings, receiver: LogisticsReceiver) -> None:
    settings = _configured(settings, receiver.url)
    service = make_service(settings)
    receiver.stop()  # the logistics system is down
    event_id = _emit(service)
    clock = Clock()
    dispatcher = Dispatcher(service.db, settings, clock=clock)
    asyncio.run(dispatcher.run_once_and_close())
    row = _outbox(service, event_id)
    assert row.status == "pending" and row.attempts == 1
    wait = (row.due_at - clock.now).total_seconds()
    assert 4.5 <= wait <= 5.5, "second try 5 s later, with jitter"

    receiver.start()  # back up, same port
    receiver.responses.extend([(503, {"Retry-After": "120"})])
    clock.advance(wait)
    asyncio.run(dispatcher.run_once_and_close())
    row = _outbox(service, event_id)
    assert row.status == "pending" and row.attempts == 2
    assert 119 <= (row.due_at - clock.now).total_seconds() <= 121, "503 honours Retry-After"

    clock.advance(60)
    assert asyncio.run(dispatcher.run_once_and_close()) == 0, "not before Retry-After"
    clock.advance(61)
    asyncio.run(dispatcher.run_once_and_close())
    assert _outbox(service, event_id).status == "sent"
    assert [d.webhook_id for d in receiver.deliveries] == [event_id, event_id]
    assert all(d.verified for d in receiver.deliveries)
    assert len(receiver.accepted()) == 1  # a consumer deduping on webhook-id processes it once


def test_schedule_spans_about_three_days_then_dead_letters_and_redelivers(make_service: Callable[..., Service],
        settings: Settings, receiver: LogisticsReceiver, auth: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from bot.app import create_app

    settings = _configured(settings, receiver.url)
    service = make_service(settings)
    event_id = _emit(service)
    clock = Clock()
    dispatcher = Dispatcher(service.db, settings, clock=clock)
    receiver.responses.extend([(500, {})] * 10)
    waits = []
    for _ in range(10):
        assert asyncio.run(dispatcher.run_once_and_close()) == 1
        row = _outbox(service, event_id)
        if row.status != "pending":
            break
        waits.append((row.due_at - clock.now).total_seconds())
        clock.advance(waits[-1])
    row = _outbox(service, event_id)
    assert row.status == "dead" and row.attempts == 10
    expected = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert len(waits) == len(expected)
    for got, want in zip(waits, expected, strict=True):
        assert want * 0.89 <= got <= want * 1.11
    assert 2.9 <= sum(waits) / 86400 <= 3.5
    assert {d.webhook_id for d in receiver.deliveries} == {event_id}

    client = TestClient(create_app(service=service))
    failed = client.get("/api/events", params={"status": "failed"}, headers=auth).json()
    assert [(e["id"], e["delivery"]["status"], e["delivery"]["attempts"]) for e in failed["events"]] == [
        (event_id, "dead", 10)]
    assert "HTTP 500" in failed["events"][0]["delivery"]["last_error"]

    env = {**os.environ, "DATABASE_URL": settings.database_url, "DOORSTEP_CONFIG": "none.yaml"}
    listed = subprocess.run([DOORSTEP, "events", "list", "--failed", "--json"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert event_id in listed.stdout and '"dead"' in listed.stdout
    redo = subprocess.run([DOORSTEP, "events", "redeliver", event_id], env=env, capture_output=True, text=True,
                          timeout=60)
    assert redo.returncode == 0, redo.stderr
    asyncio.run(dispatcher.run_once_and_close())
    assert _outbox(service, event_id).status == "sent"
    assert receiver.accepted()[0]["id"] == event_id
    assert client.get("/api/events", params={"status": "failed"}, headers=auth).json()["events"] == []
    missing = subprocess.run([DOORSTEP, "events", "redeliver", "evt_nope"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "No event" in missing.stderr


def test_410_disables_the_endpoint_until_enabled(make_service: Callable[..., Service], settings: Settings, receiver: LogisticsReceiver) -> None:
    settings = _configured(settings, receiver.url)
    service = make_service(settings)
    dispatcher = Dispatcher(service.db, settings)
    receiver.responses.append((410, {}))
    first = _emit(service)
    asyncio.run(dispatcher.run_once_and_close())
    assert _outbox(service, first).status == "failed"
    second = _emit(service, "cod.confirmed")
    asyncio.run(dispatcher.run_once_and_close())
    assert _outbox(service, second).status == "failed"
    assert "disabled" in (_outbox(service, second).last_error or "")
    assert len(receiver.deliveries) == 1, "nothing is sent to a disabled endpoint"

    env = {**os.environ, "DATABASE_URL": settings.database_url, "LOGISTICS_WEBHOOK_URL": receiver.url,
           "DOORSTEP_CONFIG": "none.yaml"}
    enabled = subprocess.run([DOORSTEP, "events", "enable"], env=env, capture_output=True, text=True, timeout=60)
    assert enabled.returncode == 0 and "re-enabled" in enabled.stdout
    for event_id in (first, second):
        assert subprocess.run([DOORSTEP, "events", "redeliver", event_id], env=env, capture_output=True,
                              timeout=60).returncode == 0
    asyncio.run(dispatcher.run_once_and_close())
    assert {p["id"] for p in receiver.accepted()} == {first, second}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x", "http://10.0.0.7/x", "file:///etc/passwd"])
def test_private_loopback_and_metadata_addresses_are_refused(make_service: Callable[..., Service], settings: Settings, url: str) -> None:
    settings = _configured(settings, url, allow_private=False)
    service = make_service(settings)
    event_id = _emit(service)
    asyncio.run(Dispatcher(service.db, settings).run_once_and_close())
    row = _outbox(service, event_id)
    assert row.status == "failed" and row.attempts == 1
    assert "LOGISTICS_WEBHOOK_URL" in (row.last_error or "")


def test_without_an_endpoint_events_stay_in_the_feed(make_service: Callable[..., Service], settings: Settings, auth: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from bot.app import create_app

    service = make_service(settings)
    event_id = _emit(service)
    asyncio.run(Dispatcher(service.db, settings).run_once_and_close())
    client = TestClient(create_app(service=service))
    page = client.get("/api/events", headers=auth).json()
    assert [(e["id"], e["delivery"]["status"]) for e in page["events"]] == [(event_id, "feed_only")]
    with service.db.session() as session:
        assert session.exec(select(LogisticsEvent)).one().id == event_id


def test_feed_pages_oldest_first_with_a_stable_cursor(make_service: Callable[..., Service], settings: Settings, auth: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from bot.app import create_app

    service = make_service(settings)
    ids = [_emit(service, "delivery.rescheduled", n=n) for n in range(5)]
    client = TestClient(create_app(service=service))
    first = client.get("/api/events", params={"limit": 2}, headers=auth).json()
    assert [e["id"] for e in first["events"]] == ids[:2] and first["has_more"] is True
    second = client.get("/api/events", params={"after": first["next_cursor"], "limit": 2}, headers=auth).json()
    assert [e["id"] for e in second["events"]] == ids[2:4]
    ids.append(_emit(service, "cod.confirmed"))
    rest = client.get("/api/events", params={"after": second["next_cursor"]}, headers=auth).json()
    assert [e["id"] for e in rest["events"]] == ids[4:] and rest["has_more"] is False
    again = client.get("/api/events", params={"after": rest["next_cursor"]}, headers=auth).json()
    assert again == {"events": [], "next_cursor": rest["next_cursor"], "has_more": False}
    # Re-reading from an old cursor gives the same events with the same cursors.
    replay = client.get("/api/events", params={"after": first["next_cursor"], "limit": 2}, headers=auth).json()
    assert replay == second
    one = client.get(f"/api/events/{ids[0]}", headers=auth).json()
    assert one["id"] == ids[0] and one["data"]["n"] == 0 and one["cursor"] == first["events"][0]["cursor"]

    assert client.get("/api/events", params={"after": "abc"}, headers=auth).status_code == 400
    assert client.get("/api/events", params={"limit": 0}, headers=auth).status_code == 422
    assert client.get("/api/events/evt_missing", headers=auth).status_code == 404
    assert client.get("/api/events").status_code == 401
    assert client.post(f"/api/events/{ids[0]}/redeliver").status_code == 401
    redo = client.post(f"/api/events/{ids[0]}/redeliver", headers=auth)
    assert redo.status_code == 200 and redo.json()["delivery"]["status"] == "pending"


def test_public_destinations_are_pinned_to_the_vetted_address() -> None:
    import httpx

    from bot.core.urlguard import GuardedTransport

    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def post(url: str, allow_private: bool = False) -> None:
        transport = GuardedTransport(setting="LOGISTICS_WEBHOOK_URL", allow_private=allow_private,
                                     inner=httpx.MockTransport(record))
        async with httpx.AsyncClient(transport=transport) as client:
            await client.post(url)

    asyncio.run(post("https://93.184.216.34:8443/doorstep?x=1"))
    asyncio.run(post("http://[2606:2800:220:1::1]/in"))
    asyncio.run(post("https://localhost:8443/hook?x=1", allow_private=True))
    assert [str(r.url) for r in seen] == ["https://93.184.216.34:8443/doorstep?x=1", "http://[2606:2800:220:1::1]/in",
                                          "https://127.0.0.1:8443/hook?x=1"]
    # The connection goes to the vetted address; Host, SNI and the certificate check keep the name.
    assert seen[2].headers["host"] == "localhost:8443" and seen[2].extensions["sni_hostname"] == "localhost"
    assert "sni_hostname" not in seen[1].extensions
