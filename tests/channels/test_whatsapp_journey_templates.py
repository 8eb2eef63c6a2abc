"""Proactive WhatsApp outside the 24-hour window (issue 17): every proactive journey has its own approvable
template per locale (data/whatsapp_templates.yml) with named variables and, for a choice, quick-reply
buttons; `sync-templates` creates and keeps them; a journey message outside the window goes as its own
Content SID with the real values, a tap on its button is read like the same tap inside the window, and
without an approved template the message goes by SMS with the reason. Real twilio client against the
fake provider, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.app import create_app
from bot.core import whatsapp_templates
from bot.core.models import Order
from bot.core.settings import Settings
from bot.core.vocab import (
    INFORMATIONAL_JOURNEYS,
    MARKETING_JOURNEYS,
    REMINDER_JOURNEYS,
    TRANSIT_JOURNEYS,
    template_key,
)
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from bot.store import content
from integrations import twilio_content
from tests.channels.conftest import ASHA, PUBLIC_URL, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio
from tests.support.factories import order_payload

WHATSAPP = f"whatsapp:{ASHA}"


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    return new_service(with_channels(settings, twilio=fake_twilio),
                       shop_overrides={"contact_policy": {"quiet_hours": ""}})


def _sync(service: Service) -> twilio_content.SyncReport:
    report = asyncio.run(twilio_content.sync(service.settings))
    with service.db.session() as session:
        content.save(session, report.synced)
    return report


def _event(client: TestClient, auth: dict[str, str], kind: str) -> None:
    response = client.post("/api/orders/A1001/events", headers=auth,
                           json={"type": kind, "at": datetime.now(UTC).isoformat()})
    assert response.status_code in (200, 201), response.text


def _log(client: TestClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    return client.get("/api/orders/A1001/messages", headers=auth).json()["messages"]  # type: ignore[no-any-return]


def _one_sent(service: Service, fake: FakeTwilio) -> dict[str, Any]:
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake.sent_to(ASHA)  # to the number, on WhatsApp or SMS
    return sent


# ------------------------------------------------------------ the definitions


def test_every_proactive_journey_has_a_template_in_every_locale() -> None:
    found = whatsapp_templates.templates()
    kinds = {template_key(j) for j in (*INFORMATIONAL_JOURNEYS, *TRANSIT_JOURNEYS, *REMINDER_JOURNEYS,
                                       *MARKETING_JOURNEYS)} | {"journey.order_confirmed_cod"}
    assert kinds <= set(found), sorted(kinds - set(found))
    assert {"address.ask_flat_number", "address.ask_postal_code"} <= set(found)
    for kind, template in found.items():
        assert set(template.body) == set(whatsapp_templates.LOCALES), kind
        expected = "MARKETING" if kind in {template_key(j) for j in MARKETING_JOURNEYS} else "UTILITY"
        assert template.category == expected, kind
        for locale in whatsapp_templates.LOCALES:
            body = template.positional_body(locale)
            numbers = [str(i) for i in range(1, len(template.order(locale)) + 1)]
            assert "{{" + numbers[-1] + "}}" in body and not body.startswith("{{") and not body.endswith("}}"), kind
    for kind in ("journey.order_confirmed_cod", "journey.cod_reminder"):
        assert [b.id for b in found[kind].buttons] == ["/btn:affirm:yes", "/btn:deny:no"]
    # Word order differs by language; each locale numbers its own variables in the order they appear.
    assert found["journey.failed_attempt"].order("en") == ["carrier", "order_id"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda t: t["body"].pop("es"), "journey.shipped.body: no text for locale es"),
    (lambda t: t["body"].update(en="{{order_id}} has shipped with {{carrier}}."),
     "journey.shipped.body.en: may not start or end with a variable"),
    (lambda t: t["body"].update(en="Order {{order_id}} shipped, see {{courier}} now."),
     "journey.shipped.body.en: {{courier}} is not among the template's variables"),
    (lambda t: t["body"].update(en="Order {{order_id}} {{carrier}} shipped."), "two variables may not touch"),
    (lambda t: t["body"].update(en="Order {{order_id}} shipped, thanks."),
     "journey.shipped.body.en: variable 'carrier' is declared but not used"),
    (lambda t: t["body"].update(en="Order {{1}} shipped with {{carrier}} today."), "{{1}} is not a variable name"),
    (lambda t: t["variables"]["carrier"].pop("sample"), "journey.shipped.variables.carrier: needs a `sample`"),
    (lambda t: t.update(category="PROMO"), "journey.shipped.category: must be one of UTILITY, MARKETING"),
    (lambda t: t.update(buttons=[{"id": "/btn:affirm:yes", "title": {"en": "Yes, please confirm my order",
                                                                      "es": "Sí", "hi-Latn": "Haan"}}]),
     "journey.shipped.buttons[1].title.en: longer than 20 characters"),
])
def test_a_bad_definition_is_refused_at_load_with_a_clear_error(change: Any, problem: str) -> None:
    template: dict[str, Any] = {
        "category": "UTILITY",
        "variables": {"order_id": {"value": "{{ order.order_id }}", "sample": "A1001"},
                      "carrier": {"value": "{{ order.carrier }}", "sample": "Delhivery"}},
        "body": {"en": "Order {{order_id}} shipped with {{carrier}} today.",
                 "es": "Pedido {{order_id}} enviado con {{carrier}} hoy.",
                 "hi-Latn": "Order {{order_id}} aaj {{carrier}} se ship hua."}}
    assert whatsapp_templates.parse({"languages": {"en": "en", "es": "es", "hi-Latn": "hi"},
                                     "templates": {"journey.shipped": template}})
    change(template)
    with pytest.raises(whatsapp_templates.TemplateDataError) as refused:
        whatsapp_templates.parse({"languages": {"en": "en", "es": "es", "hi-Latn": "hi"},
                                  "templates": {"journey.shipped": template}})
    assert problem in str(refused.value)


def test_a_variable_is_never_empty_and_never_has_newlines_tabs_or_long_runs_of_spaces() -> None:
    assert whatsapp_templates.sanitize("Blue\nDart\t\tExpress     Ltd") == "Blue Dart Express Ltd"
    assert whatsapp_templates.sanitize("    ") == "-" and whatsapp_templates.sanitize(None) == "-"
    assert whatsapp_templates.sanitize("", "our courier") == "our courier"
    shipped = whatsapp_templates.templates()["journey.shipped"]
    filled = shipped.positional({"order_id": "A1001", "carrier": "", "expected": "\n", "tracking_url": None}, "es")
    assert filled == {"1": "A1001", "2": "nuestro transportista", "3": "por confirmar", "4": "aún no disponible"}


# ------------------------------------------------------------ sync


def test_sync_creates_one_template_per_journey_and_locale_with_variables_and_buttons(
        service: Service, fake_twilio: FakeTwilio) -> None:
    first = _sync(service)
    journeys = whatsapp_templates.templates()
    assert len(first.submitted) == len(journeys) * len(whatsapp_templates.LOCALES)
    shipped_es = fake_twilio.content_named("doorstep_shipped_es_")
    assert shipped_es["language"] == "es" and fake_twilio.content_named("doorstep_shipped_hi_latn_")["language"] == "hi"
    body = shipped_es["types"]["twilio/text"]["body"]
    assert body.startswith("Tu pedido {{1}} ha salido con {{2}}") and "{{4}}" in body
    assert shipped_es["variables"] == {"1": "A1001", "2": "Delhivery", "3": "Sat, 28 Nov",
                                       "4": "https://track.example.com/A1001"}
    cod = fake_twilio.content_named("doorstep_order_confirmed_cod_en_")["types"]["twilio/quick-reply"]
    assert [(a["title"], a["id"]) for a in cod["actions"]] == [("Yes, confirm", "/btn:affirm:yes"), ("No", "/btn:deny:no")]
    approvals = {r["json"]["name"]: r["json"]["category"] for r in fake_twilio.requests
                 if r["path"].endswith("/ApprovalRequests/whatsapp")}
    assert approvals[shipped_es["friendly_name"]] == "UTILITY"
    assert approvals[fake_twilio.content_named("doorstep_reorder_hi_latn_")["friendly_name"]] == "MARKETING"

    created = len(fake_twilio.contents)
    fake_twilio.approve("doorstep_shipped_es_")
    fake_twilio.approve("doorstep_delivered_en_", category="MARKETING")  # WhatsApp re-files it
    fake_twilio.approve("doorstep_reorder_en_", status="rejected")
    second = _sync(service)
    assert (second.created, second.submitted, len(fake_twilio.contents)) == ([], [], created)  # idempotent
    with service.db.session() as session:
        states = content.states(session)
    assert (states["doorstep_shipped_es"].approval_status, states["doorstep_shipped_es"].category) == ("approved", "utility")
    assert (states["doorstep_delivered_en"].usable, states["doorstep_delivered_en"].category) == (True, "marketing")
    assert not states["doorstep_reorder_en"].usable and not states["doorstep_shipped_en"].usable


# ------------------------------------------------------------ sending outside the window


def test_a_shipped_message_outside_the_window_goes_as_its_own_template_with_the_real_values(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service, customer={"channel": "whatsapp", "locale": "es"},
              carrier="Blue\nDart\t\tExpress     Ltd", tracking_url="")
    _sync(service)
    fake_twilio.approve("doorstep_shipped_es_")
    _sync(service)

    _event(client, auth, "shipped")
    sent = _one_sent(service, fake_twilio)
    assert (sent["to"], sent["content_sid"], sent["body"]) == (
        WHATSAPP, fake_twilio.content_named("doorstep_shipped_es_")["sid"], "")
    variables = json.loads(sent["content_variables"])
    assert (variables["1"], variables["2"], variables["4"]) == ("A1001", "Blue Dart Express Ltd", "aún no disponible")
    with service.db.session() as session:
        promised = session.exec(select(Order).where(Order.order_id == "A1001")).one().promised_date
    assert promised is not None and str(promised.day) in variables["3"] and variables["3"] != "por confirmar"
    [shipped] = [m for m in _log(client, auth) if m["journey"] == "shipped"]
    assert (shipped["channel"], shipped["plan"]["form"]) == ("whatsapp", "template")
    assert "approved template doorstep_shipped_es" in shipped["plan"]["reason"]


def test_the_shop_default_locale_template_stands_in_when_the_customers_is_not_approved(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service, customer={"channel": "whatsapp", "locale": "hi-Latn"})
    _sync(service)
    fake_twilio.approve("doorstep_delivered_en_")
    _sync(service)
    _event(client, auth, "delivered")
    sent = _one_sent(service, fake_twilio)
    assert sent["content_sid"] == fake_twilio.content_named("doorstep_delivered_en_")["sid"]
    assert json.loads(sent["content_variables"])["1"] == "A1001"
    [delivered] = [m for m in _log(client, auth) if m["journey"] == "delivered"]
    assert "template doorstep_delivered_en (doorstep_delivered_hi_latn: received)" in delivered["plan"]["reason"]


def test_without_an_approved_template_the_message_goes_by_sms_and_the_plan_names_the_templates(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    add_order(service, customer={"channel": "whatsapp", "locale": "es"})
    _sync(service)
    fake_twilio.approve("doorstep_delivered_es_", status="rejected")
    _sync(service)
    _event(client, auth, "delivered")
    sent = _one_sent(service, fake_twilio)
    assert sent["to"] == ASHA and not sent["content_sid"] and "A1001" in sent["body"]
    [delivered] = [m for m in _log(client, auth) if m["journey"] == "delivered"]
    assert delivered["channel"] == "sms"
    assert ("no approved template (doorstep_delivered_es: rejected; doorstep_delivered_en: received): SMS instead"
            in delivered["plan"]["reason"])


def test_a_cod_confirmation_outside_the_window_has_buttons_and_a_tap_confirms_the_order(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    _sync(service)
    fake_twilio.approve("doorstep_order_confirmed_cod_en_")
    _sync(service)
    created = client.post("/api/orders", headers=auth, json=order_payload(
        payment_method="cod", total="1299.00", customer={"channel": "whatsapp"}))
    assert created.status_code in (200, 201), created.text

    sent = _one_sent(service, fake_twilio)
    template = fake_twilio.content_named("doorstep_order_confirmed_cod_en_")
    assert (sent["to"], sent["content_sid"]) == (WHATSAPP, template["sid"])
    variables = json.loads(sent["content_variables"])
    assert variables["1"] == "A1001" and variables["2"] == "T-shirt" and "1,299" in variables["4"]
    actions = template["types"]["twilio/quick-reply"]["actions"]
    assert [a["id"] for a in actions] == ["/btn:affirm:yes", "/btn:deny:no"]

    # The customer taps "Yes, confirm": WhatsApp posts the button's id as ButtonPayload.
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=WHATSAPP, body=actions[0]["title"],
                                        interactive={"ButtonText": actions[0]["title"],
                                                     "ButtonPayload": actions[0]["id"]})
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    with service.db.session() as session:
        assert session.exec(select(Order).where(Order.order_id == "A1001")).one().cod_status == "confirmed"
    drain(Dispatcher(service.db, service.settings))
    answer = fake_twilio.sent_to(ASHA)[-1]
    assert answer["to"] == WHATSAPP and "confirmed" in answer["body"].lower()  # inside the window now: session


def test_an_operator_mapping_overrides_the_synced_template_with_the_same_variables(
        settings: Settings, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio, twilio_whatsapp_templates="journey.shipped=HX1111"),
                          shop_overrides={"contact_policy": {"quiet_hours": ""}})
    add_order(service, customer={"channel": "whatsapp"})
    with TestClient(create_app(service=service)) as own:
        _event(own, auth, "shipped")
        sent = _one_sent(service, fake_twilio)
        assert sent["content_sid"] == "HX1111"
        variables = json.loads(sent["content_variables"])
        assert (variables["1"], variables["2"], variables["4"]) == ("A1001", "Delhivery", "https://track.example.com/DL123")
        assert variables["3"] not in ("", "-", "to be confirmed")
        [shipped] = [m for m in _log(own, auth) if m["journey"] == "shipped"]
        assert "template for journey.shipped (TWILIO_WHATSAPP_TEMPLATES)" in shipped["plan"]["reason"]


def test_an_address_question_outside_the_window_goes_as_its_template_with_the_address(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    _sync(service)
    fake_twilio.approve("doorstep_address_ask_flat_number_es_")
    _sync(service)
    created = client.post("/api/orders", headers=auth, json=order_payload(
        customer={"channel": "whatsapp", "locale": "es"},
        shipping_address={"line1": "MG Road", "postal_code": "560001"}))
    assert created.status_code in (200, 201) and created.json()["address_status"] == "needs_clarification"
    drain(Dispatcher(service.db, service.settings))
    [asked] = [m for m in fake_twilio.sent_to(ASHA)
               if m["content_sid"] == fake_twilio.content_named("doorstep_address_ask_flat_number_es_")["sid"]]
    variables = json.loads(asked["content_variables"])
    assert variables["1"] == "A1001" and "MG Road" in variables["2"] and "560001" in variables["2"]
    # The order confirmation's own Spanish template is not approved: that one went by SMS, and says why.
    [confirmed] = [m for m in _log(client, auth) if m["journey"] == "order_confirmed"]
    assert confirmed["channel"] == "sms" and "doorstep_order_confirmed_es: received" in confirmed["plan"]["reason"]


def test_inside_the_window_the_cod_question_has_the_same_buttons_as_a_session_message(
        client: TestClient, service: Service, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    _sync(service)  # the session button templates; the journey templates stay pending
    add_order(service, customer={"channel": "whatsapp"})
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=WHATSAPP, body="hello")
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200  # the window opens
    drain(Dispatcher(service.db, service.settings))
    created = client.post("/api/orders", headers=auth, json=order_payload(
        "A1002", payment_method="cod", customer={"channel": "whatsapp"}))
    assert created.status_code in (200, 201), created.text
    drain(Dispatcher(service.db, service.settings))
    asked = fake_twilio.sent_to(ASHA)[-1]
    assert asked["content_sid"] == fake_twilio.content_named("doorstep_buttons_2_")["sid"]
    variables = json.loads(asked["content_variables"])
    assert "A1002" in variables["1"] and (variables["2"], variables["3"], variables["4"], variables["5"]) == (
        "Yes, confirm", "/btn:affirm:yes", "No", "/btn:deny:no")
