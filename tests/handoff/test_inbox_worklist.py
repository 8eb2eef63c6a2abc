"""Finding work in the inbox over HTTP: views with counts, search, filters, sorting; resolved stays findable."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.core.models import Customer, Escalation
from bot.service import Service
from tests.handoff.helpers import add_order, csrf_of, escalate, inbox_login

MARIA = "+34699111222"
RAVI = "+919876543210"


@pytest.fixture
def service(settings):  # type: ignore[no-untyped-def]
    return Service.create(settings)


def _three_escalations(service: Service) -> dict[str, int]:
    """Asha (en, console, A1001/DL123), María (es, sms, B2001), Ravi (hi-Latn, console, A1002/BD777)."""
    add_order(service, customer={"name": "Asha Rao"})
    add_order(service, order_id="B2001", phone=MARIA, tracking_number="ES555",
              customer={"name": "María López", "locale": "es"})
    add_order(service, order_id="A1002", phone=RAVI, tracking_number="BD777",
              customer={"name": "Ravi Kumar", "locale": "hi-Latn"})
    escalate(service)
    escalate(service, phone=MARIA, channel="sms")
    escalate(service, phone=RAVI)
    ids = {}
    with service.db.session() as session:
        for escalation, name in session.exec(select(Escalation, Customer.name).join(
                Customer, Customer.id == Escalation.customer_id)):  # type: ignore[arg-type]
            ids[name.split()[0]] = escalation.id
    return ids


def _listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="esc[^"]*" data-id="(\d+)"', html)]


def _counts(html: str) -> dict[str, int]:
    return {view: int(n) for view, n in re.findall(r'data-count="(\w+)">(\d+)<', html)}


def test_views_count_and_list_the_work(service: Service, client: TestClient) -> None:
    ids = _three_escalations(service)
    inbox_login(client)
    page = client.get("/inbox").text
    assert _counts(page) == {"open": 3, "mine": 0, "unassigned": 3, "waiting": 0, "overdue": 0, "snoozed": 0,
                             "resolved": 0, "all": 3}
    assert sorted(_listed(page)) == sorted(ids.values())
    csrf = csrf_of(page)

    # Meera takes Asha's and answers her: Asha is hers and now waits on the customer.
    client.post(f"/inbox/escalations/{ids['Asha']}/assign", data={"csrf": csrf})
    client.post(f"/inbox/escalations/{ids['Asha']}/reply", data={"csrf": csrf, "text": "Checking now."})
    page = client.get("/inbox").text
    assert _counts(page)["mine"] == 1 and _counts(page)["unassigned"] == 2 and _counts(page)["waiting"] == 1
    assert _listed(client.get("/inbox?view=mine").text) == [ids["Asha"]]
    assert _listed(client.get("/inbox?view=unassigned").text) == sorted([ids["María"], ids["Ravi"]])
    assert _listed(client.get("/inbox?view=waiting").text) == [ids["Asha"]]
    # Another agent's "mine" is empty.
    other = TestClient(client.app)
    inbox_login(other, name="Ravi S")
    assert _listed(other.get("/inbox?view=mine").text) == []

    # Resolved: gone from the working views, kept in "resolved" and "all".
    client.post(f"/inbox/escalations/{ids['Asha']}/resolve", data={"csrf": csrf})
    page = client.get("/inbox").text
    assert ids["Asha"] not in _listed(page) and _counts(page)["resolved"] == 1 and _counts(page)["all"] == 3
    resolved = client.get("/inbox?view=resolved").text
    assert _listed(resolved) == [ids["Asha"]] and "resolved" in resolved

    # The poll of the list gives the same rows and counts.
    polled = client.get("/inbox/partials/list?view=resolved").json()
    assert polled["counts"]["resolved"] == 1 and polled["total"] == 1 and f'data-id="{ids["Asha"]}"' in polled["html"]


def test_search_by_order_phone_name_tracking_and_id_finds_resolved_too(service: Service, client: TestClient,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    ids = _three_escalations(service)
    inbox_login(client)
    csrf = csrf_of(client.get("/inbox").text)
    client.post(f"/inbox/escalations/{ids['María']}/resolve", data={"csrf": csrf})

    def search(q: str, **extra: str) -> list[int]:
        response = client.post("/inbox", data={"csrf": csrf, "q": q, "current_view": "open", **extra})
        assert response.status_code == 200, response.text
        return _listed(response.text)

    caplog.set_level(logging.DEBUG)
    assert search("b2001") == [ids["María"]]  # an order id, any case; resolved, still found
    assert search("ES555") == [ids["María"]]  # a tracking number
    assert search("BD777") == [ids["Ravi"]]
    assert search("98123 45678") == [ids["Asha"]]  # the end of a phone number, as typed
    assert search(MARIA) == [ids["María"]]  # the whole number
    assert search("lópez") == [ids["María"]]  # a part of the name
    assert search(f"#{ids['Ravi']}") == [ids["Ravi"]]
    assert search("nobody-like-this") == []
    assert search("B2001", view="open") == []  # a view button pressed: the search stays in it
    assert "+34699111222" not in caplog.text and "98123" not in caplog.text

    # The search is posted: no URL on the page carries it, and a forged post is refused.
    page = client.post("/inbox", data={"csrf": csrf, "q": MARIA}).text
    assert MARIA not in " ".join(re.findall(r'(?:href|action|data-poll)="([^"]+)"', page))
    assert client.post("/inbox", data={"q": MARIA}).status_code == 403
    polled = client.post("/inbox/partials/list", data={"csrf": csrf, "q": "BD777", "view": "all"}).json()
    assert polled["total"] == 1 and f'data-id="{ids["Ravi"]}"' in polled["html"]


def test_filters_and_sorting(service: Service, client: TestClient) -> None:
    ids = _three_escalations(service)
    inbox_login(client)
    assert _listed(client.get("/inbox?language=es").text) == [ids["María"]]
    assert _listed(client.get("/inbox?channel=sms").text) == [ids["María"]]
    assert sorted(_listed(client.get("/inbox?channel=console").text)) == sorted([ids["Asha"], ids["Ravi"]])
    assert sorted(_listed(client.get("/inbox?reason=customer_asked").text)) == sorted(ids.values())
    assert _listed(client.get("/inbox?reason=complaint").text) == []
    assert _listed(client.get("/inbox?age=4h").text) == []

    # Ravi's escalation opened 5 hours ago and is overdue; María's is the least urgent.
    now = service.now()
    with service.db.session() as session:
        for escalation in session.exec(select(Escalation)):
            if escalation.id == ids["Ravi"]:
                escalation.created_at = now - timedelta(hours=5)
                escalation.sla_due_at = now - timedelta(minutes=10)
            elif escalation.id == ids["María"]:
                escalation.sla_due_at = now + timedelta(hours=2)
            session.add(escalation)
    assert _listed(client.get("/inbox?age=4h").text) == [ids["Ravi"]]
    page = client.get("/inbox").text
    assert _listed(page) == [ids["Ravi"], ids["Asha"], ids["María"]]  # SLA first
    assert _counts(page)["overdue"] == 1 and _listed(client.get("/inbox?view=overdue").text) == [ids["Ravi"]]
    assert "overdue" in page
    assert _listed(client.get("/inbox?sort=oldest").text)[0] == ids["Ravi"]
    assert _listed(client.get("/inbox?sort=newest").text)[-1] == ids["Ravi"]
    # The filters apply to the counts too.
    assert _counts(client.get("/inbox?language=es").text)["open"] == 1


def test_bad_filters_are_a_clear_4xx(service: Service, client: TestClient) -> None:
    _three_escalations(service)
    inbox_login(client)
    bad = client.get("/inbox?view=everything")
    assert bad.status_code == 422 and "view" in bad.text and "one of" in bad.text
    assert client.get("/inbox?sort=random").status_code == 422
    assert client.get("/inbox/partials/list?age=1y").json()["detail"].startswith("age")
    csrf = csrf_of(client.get("/inbox").text)
    assert client.post("/inbox", data={"csrf": csrf, "q": "x" * 150}).status_code == 422
