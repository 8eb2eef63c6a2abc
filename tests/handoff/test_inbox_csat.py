"""CSAT after a resolve: the one-tap question, the customer's answer stored on the escalation and shown."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bot.app import create_app
from bot.core.models import Escalation, Message
from bot.core.settings import Settings
from bot.service import Service
from tests.conftest import TEST_API_KEY
from tests.handoff.helpers import add_order, csrf_of, escalate, inbox_login, say

API = {"Authorization": f"Bearer {TEST_API_KEY}"}
Escalated = Callable[..., tuple[Service, int]]


@pytest.fixture
def escalated(settings: Settings) -> Iterator[Escalated]:
    """A shop (CSAT on by default with `csat=True`) whose customer has just asked for a person:
    (service, escalation id). The services are closed after the test."""
    services: list[Service] = []

    def make(*, csat: bool = False) -> tuple[Service, int]:
        service = Service.create(settings, shop_overrides={"inbox": {"csat": True}} if csat else None)
        services.append(service)
        add_order(service)
        escalate(service)
        return service, _latest(service)

    yield make
    for service in services:
        service.db.dispose()


def _latest(service: Service) -> int:
    with service.db.session() as session:
        return session.exec(select(Escalation.id).order_by(col(Escalation.id).desc())).first()  # type: ignore[return-value]


def _out(service: Service) -> list[Message]:
    with service.db.session() as session:
        return list(session.exec(select(Message).where(Message.direction == "out").order_by(col(Message.id))))


def _resolve_in_inbox(client: TestClient, esc_id: int, *, ask: str = "1") -> str:
    """An agent resolves from the escalation page, ticking (or not) "ask the customer"; the page they saw."""
    page = client.get(f"/inbox/escalations/{esc_id}").text
    client.post(f"/inbox/escalations/{esc_id}/resolve", data={"csrf": csrf_of(page), "csat_offered": "1", "csat": ask})
    return page


@pytest.mark.parametrize("ask", ["1", ""])
def test_the_resolve_form_decides_whether_the_customer_is_asked(escalated: Escalated, ask: str) -> None:
    service, esc_id = escalated()
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        page = _resolve_in_inbox(client, esc_id, ask=ask)
    assert 'name="csat" value="1">' in page  # offered, not ticked: the shop's default is off
    asked = [m for m in _out(service) if m.template == "csat.ask"]
    assert len(asked) == (1 if ask else 0)
    if ask:
        assert "1 (poor) to 5 (great)" in asked[0].text


def test_a_tap_is_stored_thanked_and_shown_in_the_inbox_and_the_api(escalated: Escalated) -> None:
    service, esc_id = escalated(csat=True)
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        page = _resolve_in_inbox(client, esc_id)
        assert 'name="csat" value="1" checked>' in page
        assert [m.template for m in _out(service)].count("csat.ask") == 1
        turn = say(service, "4").turns[0]
        assert turn.flow == "csat" and "4/5" in turn.replies[0].text
        say(service, "5")  # asked once, answered once: a second number is no new rating
        with service.db.session() as session:
            escalation = session.get(Escalation, esc_id)
            assert escalation is not None and escalation.csat_score == 4 and escalation.csat_at is not None
        assert "CSAT 4/5" in client.get(f"/inbox/escalations/{esc_id}").text
        assert "CSAT 4/5" in client.get("/inbox?view=resolved").text
        assert client.get(f"/api/escalations/{esc_id}", headers=API).json()["csat_score"] == 4
    # The bot is back in charge: the next question is answered as usual.
    assert "A1001" in say(service, "where is my order").replies[0].text


def test_not_a_rating_is_asked_once_more_then_let_go(escalated: Escalated) -> None:
    service, esc_id = escalated(csat=True)
    with TestClient(create_app(service=service)) as client:
        assert client.post(f"/api/escalations/{esc_id}/resolve", json={"agent": "Meera"}, headers=API).status_code == 200
        assert "1 to 5" in say(service, "hmm").replies[0].text
        say(service, "meh")
        with service.db.session() as session:
            escalation = session.get(Escalation, esc_id)
            assert escalation is not None and escalation.csat_score is None and escalation.csat_asked_at is not None
        # An API resolve that says no asks nothing.
        escalate(service)
        client.post(f"/api/escalations/{_latest(service)}/resolve", json={"csat": False}, headers=API)
    assert [m.template for m in _out(service)].count("csat.ask") == 1


def test_the_report_shows_csat_overall_and_per_agent(escalated: Escalated) -> None:
    service, esc_id = escalated(csat=True)
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        page = client.get(f"/inbox/escalations/{esc_id}").text
        client.post(f"/inbox/escalations/{esc_id}/reply", data={"csrf": csrf_of(page), "text": "On it."})
        _resolve_in_inbox(client, esc_id)
        say(service, "2")
        report = client.get("/inbox/report").text
    assert 'id="r-opened">1<' in report and 'id="r-resolved">1<' in report
    assert 'id="r-csat-answered">1<' in report and 'id="r-csat-average">2.0 / 5<' in report
    assert "<td>Meera</td><td>1</td><td>1</td><td>2.0</td>" in report
