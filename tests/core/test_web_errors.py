"""Typed errors become 4xx `{"detail": …}` in one place (bot/web/errors.py): the status codes and
details the API has always answered with, for errors raised anywhere below a route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.core.settings import Settings
from bot.service import Service
from tests.handoff.helpers import escalate
from tests.support.factories import order_payload


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings)


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as c:
        yield c


def test_not_found_is_404_with_its_reason(client: TestClient, auth: dict[str, str]) -> None:
    for path, detail in [("/api/orders/NOPE", "order 'NOPE' not found"),
                         ("/api/orders/NOPE/messages", "order 'NOPE' not found"),
                         ("/api/escalations/4242", "escalation 4242 not found"),
                         ("/api/events/evt_nope", "no such event")]:
        response = client.get(path, headers=auth)
        assert (response.status_code, response.json()) == (404, {"detail": detail}), path
    erased = client.delete("/api/customers/+14155550199", headers=auth)
    assert (erased.status_code, erased.json()) == (404, {"detail": "no customer with this phone number"})


def test_conflict_is_409_and_invalid_input_is_422_with_the_field(
        service: Service, client: TestClient, auth: dict[str, str]) -> None:
    assert client.post("/api/orders", json=order_payload(), headers=auth).status_code == 201
    for kind in ("delivered", "shipped"):
        last = client.post("/api/orders/A1001/events", json={"type": kind, "at": "2026-11-20T10:00:00Z"}, headers=auth)
    assert (last.status_code, last.json()) == (409, {"detail": "order A1001 is delivered; it cannot become shipped"})

    escalate(service)
    [escalation] = client.get("/api/escalations", headers=auth).json()["items"]
    blank_agent = client.post(f"/api/escalations/{escalation['id']}/assign", json={"agent": "   "}, headers=auth)
    assert blank_agent.status_code == 422
    assert blank_agent.json() == {"detail": [{"loc": ["body", "agent"], "msg": "must not be empty", "type": "value_error"}]}


def test_a_bad_phone_is_422_naming_the_phone(client: TestClient, auth: dict[str, str]) -> None:
    response = client.delete("/api/customers/12ab", headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("phone: not a")


def test_only_named_errors_are_mapped(client: TestClient) -> None:
    """No catch-all: an error the mapping does not name (a bug) stays a 500, never a dressed-up 4xx."""
    from bot.core.errors import DoorstepError

    handlers = client.app.exception_handlers  # type: ignore[attr-defined]
    assert DoorstepError not in handlers and Exception not in handlers
