"""Regression: the same shipment event posted several times at once (a carrier's
retry racing its first try) answered 500 on PostgreSQL (a unique violation on
the event's dedupe key) instead of `200 duplicate`.

Both entry points are raced from threads against the real app: the orders API
and the carrier webhook. Exactly one request applies the event; every other
one is told it is a duplicate; one event row and one message result.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from sqlmodel import select

from bot.core.models import Message, OrderEvent
from bot.core.settings import Settings
from integrations.carrier_webhooks import doorstep_signature
from tests.journeys.conftest import Kit, ist, make_kit

CARRIER_SECRET = "carrier-race-test-secret"
RACERS = 4
ROUNDS = 4


def _race(requests: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(requests))
    responses: list[Any] = [RuntimeError("no answer")] * len(requests)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            responses[index] = requests[index]()
        except BaseException as exc:  # surfaced below
            responses[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    return responses


def _kit(settings: Settings, auth: dict[str, str]) -> Kit:
    configured = settings.model_copy(update={"carrier_webhook_secret": SecretStr(CARRIER_SECRET)})
    return make_kit(configured, auth, ist(23, 10))


def _one_event_and_one_message(kit: Kit, order_id: str, type_: str) -> None:
    with kit.service.db.session() as session:
        events = session.exec(select(OrderEvent).where(OrderEvent.type == type_)).all()
        assert len([e for e in events if e.order_pk is not None]) == 1
        messages = session.exec(select(Message).where(Message.template == f"journey.{type_}")).all()
        assert len(messages) == 1 and order_id in messages[0].text


def test_racing_api_events_answer_one_201_and_duplicates(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        for n in range(ROUNDS):
            order_id = f"R{n}"
            kit.post_order(order_id=order_id, phone=f"+9198123456{n:02d}", tracking_number=f"TRK{n}")
            body: dict[str, Any] = {"type": "shipped", "at": kit.clock().isoformat()}

            def post(order_id: str = order_id, body: dict[str, Any] = body) -> Any:
                return kit.client.post(f"/api/orders/{order_id}/events", json=body, headers=kit.auth)

            responses = _race([post] * RACERS)
            codes = sorted(r.status_code for r in responses)
            assert codes == [200] * (RACERS - 1) + [201], [r.text for r in responses]
            assert [r.json()["duplicate"] for r in responses].count(False) == 1
            with kit.service.db.session() as session:
                count = len(session.exec(select(OrderEvent).where(OrderEvent.type == "shipped")).all())
            assert count == n + 1
        with kit.service.db.session() as session:
            assert len(session.exec(select(Message).where(Message.template == "journey.shipped")).all()) == ROUNDS
    kit.service.db.dispose()


def test_racing_carrier_webhooks_answer_one_applied_and_duplicates(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        kit.post_order()
        body = json.dumps({"order_id": "A1001", "type": "shipped", "at": kit.clock().isoformat()}).encode()
        headers = {"content-type": "application/json", "x-doorstep-signature": doorstep_signature(CARRIER_SECRET, body)}

        def post() -> Any:
            return kit.client.post("/webhooks/carrier", content=body, headers=headers)

        responses = _race([post] * RACERS)
        assert sorted(r.status_code for r in responses) == [200] * (RACERS - 1) + [201], [r.text for r in responses]
        assert sorted(r.json()["status"] for r in responses) == ["applied"] + ["duplicate"] * (RACERS - 1)
        _one_event_and_one_message(kit, "A1001", "shipped")
    kit.service.db.dispose()
