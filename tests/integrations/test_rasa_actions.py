"""The Rasa action server endpoint, with real Rasa action-call JSON (Rasa's docs and
rasa-sdk's tests), through the real app and rasa-sdk's ActionExecutor, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import re
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core.models import Customer, Escalation, LogisticsEvent, Message
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import apply_event, get_order, today_in, upsert_order
from tests.conftest import TEST_API_KEY
from tests.support.factories import order_payload

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rasa"
ASHA = "+919812345678"
OTHER = "+919800000001"


def docs_call(action: str, sender: str | None = ASHA, **slots: Any) -> dict[str, Any]:
    """Rasa's documented action call, pointed at one of our actions for one customer."""
    call: dict[str, Any] = json.loads((FIXTURES / "docs_action_request.json").read_text())
    call["next_action"] = action
    if sender is not None:
        call["sender_id"] = call["tracker"]["sender_id"] = sender
    call["tracker"]["slots"].update(slots)
    return call


@pytest.fixture
def service(make_service: Callable[..., Service], settings: Settings) -> Service:
    service = make_service(settings)
    with service.db.session() as session:
        order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
        session.flush()
        apply_event(session=session, order=order, event_in=OrderEventIn(type="shipped"))
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(
            order_id="Z9", phone=OTHER, carrier="BlueDart", payment_method="cod", tracking_number="BD9",
            customer={"name": "Other"})))
    return service


@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(create_app(service=service))


def post(client: TestClient, call: dict[str, Any], token: str = TEST_API_KEY) -> httpx.Response:
    return client.post("/rasa/webhook", params={"token": token}, json=call)


def slot_events(body: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in body["events"] if e["event"] == "slot"}


def test_order_status_from_the_documented_action_call(client: TestClient) -> None:
    response = post(client, docs_call("action_order_status"))
    assert response.status_code == 200, response.text
    body = response.json()
    text = " ".join(r["text"] for r in body["responses"])
    assert "A1001" in text and "Delhivery" in text and "https://track.example.com/DL123" in text
    assert slot_events(body) == {"order_id": "A1001", "order_status": "shipped"}


def _sms_code(service: Service, phone: str) -> str:
    """The code in the last SMS queued to `phone` (what the customer reads on their phone)."""
    with service.db.read() as session:
        customer = session.exec(select(Customer).where(Customer.phone == phone)).one()
        message = session.exec(select(Message).where(Message.customer_id == customer.id, Message.direction == "out",
                                                      Message.template == "rasa.code_sms")
                               .order_by(Message.id.desc())).first()  # type: ignore[union-attr]
    assert message is not None, "no code was sent"
    return re.search(r"\d{6}", message.text).group(0)  # type: ignore[union-attr]


def test_a_typed_phone_is_not_an_identity_until_the_code_sent_to_it_comes_back(client: TestClient,
                                                                               service: Service) -> None:
    web = "2687378567977106"  # a web-chat sender id, not a phone
    response = post(client, docs_call("action_order_status", sender=web, phone=ASHA))
    assert response.status_code == 200
    text = response.json()["responses"][0]["text"]
    assert "code" in text and "A1001" not in text and "Delhivery" not in text
    code = _sms_code(service, ASHA)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    response = post(client, docs_call("action_order_status", sender=web, phone=ASHA, verification_code=wrong))
    assert "doesn't match" in response.json()["responses"][0]["text"]
    response = post(client, docs_call("action_order_status", sender=web, phone=ASHA, verification_code=code))
    assert "A1001" in response.json()["responses"][0]["text"]
    # Bound for the next calls of that sender, with no phone slot at all.
    response = post(client, docs_call("action_order_status", sender=web))
    assert "A1001" in response.json()["responses"][0]["text"]


def test_an_attacker_typing_another_customers_phone_can_neither_read_nor_cancel(client: TestClient,
                                                                                service: Service) -> None:
    attacker = "web-session-attacker"
    for action in ("action_order_status", "action_cancel_order"):
        response = post(client, docs_call(action, sender=attacker, phone=OTHER, order_id="Z9"))
        assert response.status_code == 200
        text = json.dumps(response.json())
        assert "BlueDart" not in text and "BD9" not in text and "Z9 is" not in text
    for guess in range(6):  # guessing codes locks the attempt
        response = post(client, docs_call("action_cancel_order", sender=attacker, phone=OTHER,
                                          verification_code=f"{guess:06d}"))
    assert "Too many wrong codes" in response.json()["responses"][0]["text"]
    with service.db.read() as session:
        assert get_order(session=session, order_id="Z9").status == "placed"  # untouched
        assert session.exec(select(LogisticsEvent)).all() == []


def test_the_code_step_does_not_reveal_whether_a_number_is_a_customer(client: TestClient, service: Service) -> None:
    known = post(client, docs_call("action_order_status", sender="web-a", phone=ASHA)).json()["responses"][0]["text"]
    unknown = post(client, docs_call("action_order_status", sender="web-b", phone="+14155550100")).json()
    assert unknown["responses"][0]["text"] == known


def test_a_customer_never_sees_another_customers_order(client: TestClient) -> None:
    response = post(client, docs_call("action_order_status", order_id="Z9"))
    assert response.status_code == 200
    text = json.dumps(response.json())
    # Nothing of the other customer's order (carrier, tracking); the id typed is only said to be not found.
    assert "BlueDart" not in text and "BD9" not in text
    assert "couldn't find order Z9 for this phone number" in response.json()["responses"][0]["text"]
    assert "A1001" in text


def test_unknown_sender_gets_a_polite_answer_and_nothing_happens(client: TestClient, service: Service) -> None:
    response = post(client, docs_call("action_order_status", sender="+14155550199"))
    assert response.status_code == 200
    assert "couldn't find an order" in response.json()["responses"][0]["text"]
    assert slot_events(response.json()) == {}


def test_reschedule_applies_the_flow_and_emits_the_logistics_event(client: TestClient, service: Service) -> None:
    day = today_in("Asia/Kolkata", service.now()) + timedelta(days=2)
    if day.weekday() == 6:  # keep clear of a shop's possible Sunday closure
        day += timedelta(days=1)
    response = post(client, docs_call("action_reschedule_delivery", delivery_date=day.isoformat(),
                                      delivery_window="evening"))
    assert response.status_code == 200, response.text
    with service.db.session() as session:
        order = get_order(session=session, order_id="A1001")
        assert order.delivery_date == day and order.delivery_window == "evening"
        events = session.exec(select(LogisticsEvent)).all()
        assert [(e.type, e.order_id, e.data["delivery_date"]) for e in events] == [
            ("delivery.rescheduled", "A1001", day.isoformat())]
    assert response.json()["responses"], "the flow's confirmation goes back to Rasa"


def test_reschedule_to_a_past_date_is_refused_with_the_flows_reason(client: TestClient, service: Service) -> None:
    past = today_in("Asia/Kolkata", service.now()) - timedelta(days=3)
    response = post(client, docs_call("action_reschedule_delivery", delivery_date=past.isoformat()))
    assert response.status_code == 200
    assert slot_events(response.json()).get("delivery_date", "kept") is None, "Rasa re-asks the date"
    with service.db.session() as session:
        assert get_order(session=session, order_id="A1001").delivery_date is None
        assert session.exec(select(LogisticsEvent)).all() == []


def test_confirm_cod_for_own_order_only(client: TestClient, service: Service) -> None:
    asha = post(client, docs_call("action_confirm_cod", order_id="Z9"))
    assert asha.status_code == 200
    with service.db.session() as session:
        assert get_order(session=session, order_id="Z9").cod_status == "pending"
    other = post(client, docs_call("action_confirm_cod", sender=OTHER))
    assert other.status_code == 200
    with service.db.session() as session:
        assert get_order(session=session, order_id="Z9").cod_status == "confirmed"
        assert [e.type for e in session.exec(select(LogisticsEvent)).all()] == ["cod.confirmed"]


def test_handoff_escalates_and_pauses_rasa(client: TestClient, service: Service) -> None:
    response = post(client, docs_call("action_handoff"))
    assert response.status_code == 200
    assert any(e["event"] == "pause" for e in response.json()["events"])
    with service.db.session() as session:
        assert len(session.exec(select(Escalation)).all()) == 1


def test_unknown_action_gets_rasa_sdks_404_shape(client: TestClient) -> None:
    call = json.loads((FIXTURES / "rasa_sdk_test_action_request.json").read_text())
    response = post(client, call)
    assert response.status_code == 404
    assert response.json() == {"error": "No registered action found for name 'custom_action'.",
                                "action_name": "custom_action"}


def test_wrong_or_missing_token_is_refused(client: TestClient) -> None:
    assert post(client, docs_call("action_order_status"), token="nope").status_code == 401
    assert client.post("/rasa/webhook", json=docs_call("action_order_status")).status_code == 401


def test_malformed_calls_get_400_and_never_echo_the_body(client: TestClient) -> None:
    broken = client.post("/rasa/webhook", params={"token": TEST_API_KEY},
                         content=b'{"next_action": "action_order_status", "sender_id": "+919812345678", ')
    assert broken.status_code == 400 and "+919812345678" not in broken.text
    no_tracker = post(client, {"next_action": "action_order_status", "sender_id": ASHA})
    assert no_tracker.status_code == 400 and ASHA not in no_tracker.text
    binary = client.post("/rasa/webhook", params={"token": TEST_API_KEY}, content=b"\x00\xff\xfe" * 100)
    assert binary.status_code == 400


def test_compressed_action_call_as_rasa_sends_it(client: TestClient) -> None:
    body = zlib.compress(json.dumps(docs_call("action_order_status")).encode())
    response = client.post("/rasa/webhook", params={"token": TEST_API_KEY}, content=body,
                           headers={"content-encoding": "deflate", "content-type": "application/json"})
    assert response.status_code == 200 and "A1001" in response.json()["responses"][0]["text"]


def test_rasa_sdk_docs_call_is_not_changed_by_us(client: TestClient) -> None:
    call = docs_call("action_order_status")
    before = copy.deepcopy(call)
    post(client, call)
    assert call == before


def test_rasa_configured_as_in_readme_gets_the_order_status_over_http(service: Service) -> None:
    """What Rasa's EndpointConfig does with `url` + `token`: POST the call with ?token= to the URL."""
    from tests.support.server import serve_in_thread

    with serve_in_thread(create_app(service=service)) as base:
        endpoint = {"url": f"{base}/rasa/webhook", "token": TEST_API_KEY}  # endpoints.yml action_endpoint
        response = httpx.post(endpoint["url"], params={"token": endpoint["token"]},
                              json=docs_call("action_order_status"), timeout=10)
        assert response.status_code == 200
        assert "A1001" in response.json()["responses"][0]["text"]
        listed = httpx.get(f"{base}/rasa/actions", params={"token": TEST_API_KEY}, timeout=10).json()
        assert {a["name"] for a in listed} == {"action_order_status", "action_reschedule_delivery",
                                               "action_update_address", "action_confirm_cod",
                                               "action_cancel_order", "action_handoff"}


def test_update_address_from_slots_uses_the_address_flow(client: TestClient, service: Service) -> None:
    response = post(client, docs_call("action_update_address", flat_number="4B", landmark="near the temple"))
    assert response.status_code == 200, response.text
    with service.db.session() as session:
        order = get_order(session=session, order_id="A1001")
        assert order.address_status == "updated"
        assert "4B" in json.dumps(order.shipping_address) and "temple" in json.dumps(order.shipping_address)
        assert [e.type for e in session.exec(select(LogisticsEvent)).all()] == ["address.updated"]


def test_cancel_after_shipping_is_refused_by_the_flows_rule(client: TestClient, service: Service) -> None:
    response = post(client, docs_call("action_cancel_order"))
    assert response.status_code == 200
    assert response.json()["responses"], "the customer is told why"
    with service.db.session() as session:
        assert get_order(session=session, order_id="A1001").status == "shipped"
        assert session.exec(select(LogisticsEvent)).all() == []
    other = post(client, docs_call("action_cancel_order", sender=OTHER))
    assert other.status_code == 200
    with service.db.session() as session:
        assert get_order(session=session, order_id="Z9").status == "cancelled"
        assert [e.type for e in session.exec(select(LogisticsEvent)).all()] == ["cod.cancelled"]
