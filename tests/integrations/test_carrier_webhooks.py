"""Carrier status in: AfterShip's tracking webhook and Doorstep's own HMAC-signed
event JSON, through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core.models import Message, Order, OrderEvent
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import apply_event, get_order, upsert_order
from integrations.carrier_webhooks import aftership_signature, doorstep_signature
from tests.support.factories import order_payload

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aftership"
AFTERSHIP_SECRET = "aftership-test-webhook-secret"
CARRIER_SECRET = "carrier-test-hmac-secret"


@pytest.fixture
def service(make_service: Callable[..., Service], settings: Settings) -> Service:
    from pydantic import SecretStr

    configured = settings.model_copy(update={"aftership_webhook_secret": SecretStr(AFTERSHIP_SECRET),
                                             "carrier_webhook_secret": SecretStr(CARRIER_SECRET)})
    service = make_service(configured)
    with service.db.session() as session:
        order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
        session.flush()
        apply_event(session=session, order=order, event_in=OrderEventIn(type="shipped"))
    return service


@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(create_app(service=service))


def aftership_body(tag: str = "OutForDelivery", tracking_number: str = "DL123", minutes_ago: int = 2) -> bytes:
    """The recorded AfterShip payload, moved to now and pointed at our order's tracking number."""
    payload: dict[str, Any] = json.loads((FIXTURES / "tracking_update_out_for_delivery.json").read_text())
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    payload["ts"] = int(when.timestamp())
    payload["msg"]["tracking_number"] = tracking_number
    payload["msg"]["tag"] = tag
    payload["msg"]["expected_delivery"] = (when + timedelta(days=1)).date().isoformat()
    payload["msg"]["checkpoints"][-1].update(tag=tag, checkpoint_time=when.isoformat(timespec="seconds"))
    return json.dumps(payload).encode()


def post_aftership(client: TestClient, body: bytes, secret: str = AFTERSHIP_SECRET) -> Any:
    return client.post("/webhooks/carrier", content=body, headers={
        "content-type": "application/json", "aftership-hmac-sha256": aftership_signature(secret, body)})


def post_doorstep(client: TestClient, payload: dict[str, Any] | bytes, secret: str = CARRIER_SECRET) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/webhooks/carrier", content=body, headers={
        "content-type": "application/json", "x-doorstep-signature": doorstep_signature(secret, body)})


def _order(service: Service) -> Order:
    with service.db.session() as session:
        return get_order(session=session, order_id="A1001")


def _journey_messages(service: Service, journey: str) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.direction == "out",
                                                       Message.template == f"journey.{journey}")).all())


def test_aftership_out_for_delivery_sends_the_out_for_delivery_message(client: TestClient, service: Service) -> None:
    body = aftership_body()
    response = post_aftership(client, body)
    assert response.status_code == 201, response.text
    assert response.json()["order_status"] == "out_for_delivery"
    order = _order(service)
    assert order.status == "out_for_delivery"
    assert order.eta == (datetime.now(UTC) - timedelta(minutes=2) + timedelta(days=1)).date()
    messages = _journey_messages(service, "out_for_delivery")
    assert len(messages) == 1 and messages[0].status in {"queued", "scheduled"}
    assert "A1001" in messages[0].text

    # AfterShip retries the same delivery: nothing new happens.
    again = post_aftership(client, body)
    assert again.status_code == 200 and again.json()["status"] in {"duplicate", "unchanged"}
    assert len(_journey_messages(service, "out_for_delivery")) == 1
    with service.db.session() as session:
        events = session.exec(select(OrderEvent).where(OrderEvent.type == "out_for_delivery")).all()
        assert [(e.source, e.type) for e in events] == [("carrier", "out_for_delivery")]


@pytest.mark.parametrize(("tag", "status"), [("Delivered", "delivered"), ("AttemptFail", "failed_attempt"),
                                             ("Exception", "delayed")])
def test_aftership_tags_map_to_doorstep_statuses(client: TestClient, service: Service, tag: str, status: str) -> None:
    assert post_aftership(client, aftership_body(tag)).status_code == 201
    assert _order(service).status == status


def test_aftership_status_without_a_doorstep_equivalent_is_accepted_and_ignored(
        client: TestClient, service: Service) -> None:
    response = post_aftership(client, aftership_body("AvailableForPickup"))
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert _order(service).status == "shipped"


def test_out_of_order_aftership_update_is_ignored_not_retried(client: TestClient, service: Service) -> None:
    assert post_aftership(client, aftership_body("Delivered")).status_code == 201
    late = post_aftership(client, aftership_body("InTransit", minutes_ago=30))
    assert late.status_code == 202 and late.json()["status"] == "ignored"
    assert _order(service).status == "delivered"


def test_unknown_tracking_number_is_accepted_and_changes_nothing(client: TestClient, service: Service,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="integrations.carrier_webhooks")
    response = post_aftership(client, aftership_body(tracking_number="NOPE999"))
    assert response.status_code == 202 and response.json() == {"status": "unknown_order"}
    assert _order(service).status == "shipped"
    assert "unknown order" in caplog.text and "NOPE999" not in caplog.text


def test_forged_and_unsigned_webhooks_are_refused(client: TestClient, service: Service) -> None:
    body = aftership_body()
    forged = post_aftership(client, body, secret="not-the-secret")
    assert forged.status_code == 401
    unsigned = client.post("/webhooks/carrier", content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    doorstep_forged = post_doorstep(client, {"order_id": "A1001", "type": "delivered"}, secret="guess")
    assert doorstep_forged.status_code == 401
    assert _order(service).status == "shipped"
    assert "9361289676091361892011" not in forged.text and "DL123" not in forged.text


def test_malformed_bodies_get_400_and_change_nothing(client: TestClient, service: Service) -> None:
    not_json = b"\x00\xff binary \x89PNG"
    assert post_aftership(client, not_json).status_code == 400
    assert post_aftership(client, b'{"msg": {"tag": "Delivered"}}').status_code == 400
    assert post_aftership(client, b"[1, 2, 3]").status_code == 400
    bad_type = post_doorstep(client, {"order_id": "A1001", "type": "teleported"})
    assert bad_type.status_code == 400 and "type" in bad_type.json()["detail"]
    no_ref = post_doorstep(client, {"type": "delivered"})
    assert no_ref.status_code == 400 and "order_id or tracking_number" in no_ref.json()["detail"]
    assert post_doorstep(client, b"{not json").status_code == 400
    huge = b'{"pad": "' + b"x" * 1_100_000 + b'"}'
    assert post_doorstep(client, huge).status_code == 413
    assert _order(service).status == "shipped"


def test_doorstep_format_by_order_id_and_by_tracking_number(client: TestClient, service: Service) -> None:
    at = datetime.now(UTC).isoformat()
    response = post_doorstep(client, {"order_id": "A1001", "type": "out_for_delivery", "at": at,
                                      "note": "with rider Ravi"})
    assert response.status_code == 201, response.text
    assert len(_journey_messages(service, "out_for_delivery")) == 1
    repeat = post_doorstep(client, {"order_id": "A1001", "type": "out_for_delivery", "at": at})
    assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"
    delivered = post_doorstep(client, {"tracking_number": "DL123", "type": "delivered",
                                       "eta": None, "at": datetime.now(UTC).isoformat()})
    assert delivered.status_code == 201 and _order(service).status == "delivered"
    impossible = post_doorstep(client, {"order_id": "A1001", "type": "shipped"})
    assert impossible.status_code == 409 and "delivered" in impossible.json()["detail"]
    unknown = post_doorstep(client, {"order_id": "Z404", "type": "shipped"})
    assert unknown.status_code == 202


def test_not_configured_secret_refuses_everything(make_service: Callable[..., Service], settings: Settings) -> None:
    service = make_service(settings)
    client = TestClient(create_app(service=service))
    body = aftership_body()
    response = client.post("/webhooks/carrier", content=body, headers={
        "aftership-hmac-sha256": aftership_signature("", body)})
    assert response.status_code == 401 and "AFTERSHIP_WEBHOOK_SECRET" in response.json()["detail"]
