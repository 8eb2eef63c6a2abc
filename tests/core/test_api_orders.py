"""The orders API through FastAPI's client, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.core.settings import Settings
from bot.service import Service
from tests.support.factories import order_payload


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(service=Service.create(settings))) as c:
        yield c


def test_create_then_update_is_idempotent(client: TestClient, auth: dict[str, str]) -> None:
    created = client.post("/api/orders", json=order_payload(), headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["order_id"] == "A1001"
    assert body["status"] == "placed"
    assert body["customer"]["phone"] == "+919812345678"
    assert body["address_status"] == "ok"
    assert body["cod_status"] is None
    assert body["delivery_date"] is None and body["delivery_window"] is None

    again = client.post("/api/orders", json=order_payload(carrier="Ekart"), headers=auth)
    assert again.status_code == 200
    assert again.json()["carrier"] == "Ekart"
    fetched = client.get("/api/orders/A1001", headers=auth).json()
    assert fetched["carrier"] == "Ekart"
    assert fetched["total"] == "499.00"


def test_phone_is_normalised_to_e164(client: TestClient, auth: dict[str, str]) -> None:
    resp = client.post("/api/orders", json=order_payload(customer={"phone": "098123 45678"}), headers=auth)
    assert resp.status_code == 201, resp.text
    assert resp.json()["customer"]["phone"] == "+919812345678"


def test_cod_order_starts_pending_and_bad_address_needs_clarification(client: TestClient, auth: dict[str, str]) -> None:
    payload = order_payload("A2", payment_method="cod", shipping_address={"line1": "MG Road", "postal_code": "12"})
    body = client.post("/api/orders", json=payload, headers=auth).json()
    assert body["cod_status"] == "pending"
    assert body["address_status"] == "needs_clarification"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (order_payload(customer={"phone": "12345"}), ["body", "customer", "phone"]),
        ({k: v for k, v in order_payload().items() if k != "customer"}, ["body", "customer"]),
        (order_payload(total="lots"), ["body", "total"]),
        (order_payload(surprise_field=1), ["body", "surprise_field"]),
        (order_payload(payment_method="barter"), ["body", "payment_method"]),
    ],
)
def test_bad_input_gets_422_with_field_reasons_and_stores_nothing(
    client: TestClient, auth: dict[str, str], payload: dict, field: list[str]
) -> None:
    resp = client.post("/api/orders", json=payload, headers=auth)
    assert resp.status_code == 422
    assert any(d["loc"] == field for d in resp.json()["detail"]), resp.json()
    assert "+91" not in resp.text  # never echo personal data back
    assert client.get(f"/api/orders/{payload.get('order_id', 'A1001')}", headers=auth).status_code == 404


def test_api_requires_the_key(client: TestClient) -> None:
    assert client.post("/api/orders", json=order_payload()).status_code == 401
    assert client.get("/api/orders/A1001", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/healthz").status_code in (200, 503)  # open, like /metrics; 503 only while starting
    assert "detail" not in client.get("/healthz").json()


def test_events_move_status_and_impossible_transition_is_409(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/api/orders", json=order_payload(), headers=auth)
    shipped = client.post("/api/orders/A1001/events", json={"type": "shipped", "at": "2026-11-22T10:00:00+05:30"}, headers=auth)
    assert shipped.status_code == 201, shipped.text
    dup = client.post("/api/orders/A1001/events", json={"type": "shipped", "at": "2026-11-22T10:00:00+05:30"}, headers=auth)
    assert dup.status_code == 200 and dup.json()["duplicate"] is True
    delayed = client.post("/api/orders/A1001/events",
                          json={"type": "delayed", "at": "2026-11-23T10:00:00+05:30", "eta": "2026-11-28"}, headers=auth)
    assert delayed.status_code == 201
    assert client.get("/api/orders/A1001", headers=auth).json()["eta"] == "2026-11-28"
    delivered = client.post("/api/orders/A1001/events", json={"type": "delivered", "at": "2026-11-28T10:00:00+05:30"}, headers=auth)
    assert delivered.status_code == 201
    back = client.post("/api/orders/A1001/events", json={"type": "shipped", "at": "2026-11-29T10:00:00+05:30"}, headers=auth)
    assert back.status_code == 409
    assert "delivered" in back.json()["detail"]
    assert client.get("/api/orders/A1001", headers=auth).json()["status"] == "delivered"


def test_unknown_event_type_and_unknown_order(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/api/orders", json=order_payload(), headers=auth)
    bad = client.post("/api/orders/A1001/events", json={"type": "teleported"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "type"]
    assert client.post("/api/orders/NOPE/events", json={"type": "shipped"}, headers=auth).status_code == 404
    assert client.get("/api/orders/NOPE", headers=auth).status_code == 404


def test_openapi_lists_the_contract_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/orders", "/api/orders/{order_id}", "/api/orders/{order_id}/events", "/healthz"):
        assert path in paths
