"""Reaching the customer and handing work on, over HTTP: roles and the full phone, call outcomes, the
WhatsApp window and its template picker, notes, hand-over, priority and tags, snooze, presence,
history, and quick replies per locale."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select
from typer.testing import CliRunner

from bot.app import create_app
from bot.cli.app import app as cli_app
from bot.core.models import Escalation, InboxPresence, Message, Outbox
from bot.core.settings import Settings, reset_settings_cache
from bot.service import Service
from tests.handoff.helpers import PHONE, add_order, csrf_of, escalate, inbox_login, say

MARIA = "+34699111222"


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings)


def _latest(service: Service) -> int:
    with service.db.session() as session:
        return session.exec(select(Escalation.id).order_by(col(Escalation.id).desc())).first()  # type: ignore[return-value]


def _post(client: TestClient, esc_id: int, path: str, **data: str) -> Any:
    csrf = csrf_of(client.get(f"/inbox/escalations/{esc_id}").text)
    return client.post(f"/inbox/escalations/{esc_id}/{path}", data={"csrf": csrf, **data}, follow_redirects=False)


def _token(settings: Settings, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, *args: str) -> str:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    reset_settings_cache()
    request.addfinalizer(reset_settings_cache)
    added = CliRunner().invoke(cli_app, ["agents", "add", *args])
    assert added.exit_code == 0, added.output
    return re.search(r"dat_[A-Za-z0-9_-]+", added.output).group(0)  # type: ignore[union-attr]


def test_roles_decide_the_full_phone_and_who_may_act(service: Service, client: TestClient, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    add_order(service)
    escalate(service)
    esc_id = _latest(service)
    viewer = _token(settings, monkeypatch, request, "Vee", "--role", "viewer")
    agent = _token(settings, monkeypatch, request, "Ravi")
    assert CliRunner().invoke(cli_app, ["agents", "add", "X", "--role", "boss"]).exit_code != 0

    inbox_login(client, token=viewer)
    page = client.get(f"/inbox/escalations/{esc_id}").text
    assert PHONE not in page and "+91******5678" in page and "tel:" not in page and "After the call" not in page
    assert "(viewer)" in page and "Reschedule delivery" not in page
    assert _post(client, esc_id, "note", body="hi").status_code == 403
    assert _post(client, esc_id, "act", action="cancel", order_id="A1001").status_code == 403
    # Promoted: the open session sees the phone at its next request.
    assert CliRunner().invoke(cli_app, ["agents", "role", "Vee", "agent"]).exit_code == 0
    assert f'href="tel:{PHONE}"' in client.get(f"/inbox/escalations/{esc_id}").text
    listed = CliRunner().invoke(cli_app, ["agents", "list"]).output
    assert "Vee" in listed and "agent" in listed

    other = TestClient(client.app)
    inbox_login(other, token=agent)
    page = other.get(f"/inbox/escalations/{esc_id}").text
    assert f'<a href="tel:{PHONE}">{PHONE}</a>' in page and "After the call" in page
    done = _post(other, esc_id, "call", outcome="no_answer", body="rang twice")
    assert done.status_code == 303
    page = other.get(f"/inbox/escalations/{esc_id}").text
    assert "call: no answer" in page and "rang twice" in page
    assert _post(other, esc_id, "call", outcome="maybe").status_code == 422
    assert PHONE not in caplog.text and "9812345678" not in caplog.text


def test_notes_handover_labels_snooze_and_the_views(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    esc_id = _latest(service)
    inbox_login(client)
    assert _post(client, esc_id, "note", body="  ").status_code == 422
    assert _post(client, esc_id, "note", body="Customer is travelling until Friday").status_code == 303
    assert "Customer is travelling until Friday" in client.get(f"/inbox/escalations/{esc_id}").text

    assert _post(client, esc_id, "handover", to="Ravi").status_code == 303
    with service.db.session() as session:
        escalation = session.get(Escalation, esc_id)
        assert escalation is not None and escalation.assignee == "Ravi" and escalation.status == "assigned"
    assert "nobody -&gt; Ravi" in client.get(f"/inbox/escalations/{esc_id}").text
    assert _post(client, esc_id, "handover", to="").status_code == 303
    assert re.search(r'data-count="unassigned">1<', client.get("/inbox").text)

    assert _post(client, esc_id, "labels", priority="urgent", tags="VIP, damaged").status_code == 303
    assert _post(client, esc_id, "labels", priority="urgent", tags="bad tag!").status_code == 422
    assert _post(client, esc_id, "labels", priority="whenever").status_code == 422
    listing = client.get("/inbox?tag=damaged&priority=urgent").text
    assert f'data-id="{esc_id}"' in listing and "#vip" in listing and "urgent" in listing
    assert f'data-id="{esc_id}"' not in client.get("/inbox?tag=vi").text  # whole tags only

    assert _post(client, esc_id, "snooze", preset="4h").status_code == 303
    assert f'data-id="{esc_id}"' not in client.get("/inbox").text
    assert f'data-id="{esc_id}"' in client.get("/inbox?view=snoozed").text
    assert _post(client, esc_id, "snooze", until="2001-01-01T09:00").status_code == 422
    say(service, "any news?")  # the customer writes: it wakes at once
    assert f'data-id="{esc_id}"' in client.get("/inbox").text
    assert _post(client, esc_id, "snooze", preset="tomorrow").status_code == 303
    assert _post(client, esc_id, "snooze", preset="wake").status_code == 303
    assert f'data-id="{esc_id}"' in client.get("/inbox").text

    # Notes stay possible after the resolve.
    _post(client, esc_id, "resolve")
    assert _post(client, esc_id, "note", body="Refund went through").status_code == 303


def test_two_agents_on_one_conversation_are_warned(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    esc_id = _latest(service)
    inbox_login(client, name="Meera")
    first = client.get(f"/inbox/escalations/{esc_id}").text
    assert re.search(r'id="others-here" role="alert" hidden', first)
    # The page's heartbeat (its script posts it every 10 s): nobody else yet.
    assert client.post(f"/inbox/escalations/{esc_id}/here", data={"csrf": csrf_of(first)}).json() == {
        "others_here": []}
    assert client.post(f"/inbox/escalations/{esc_id}/here", data={"csrf": "forged"}).status_code == 403
    other = TestClient(client.app)
    inbox_login(other, name="Ravi")
    second = other.get(f"/inbox/escalations/{esc_id}").text
    assert "Also open by <strong" in second and ">Meera</strong>" in second and "hidden" not in \
        re.search(r'<p class="warn" id="others-here"[^>]*>', second).group(0)  # type: ignore[union-attr]
    assert other.post(f"/inbox/escalations/{esc_id}/here", data={"csrf": csrf_of(second)}).json() == {
        "others_here": ["Meera"]}
    assert client.get(f"/inbox/escalations/{esc_id}/live").json()["others_here"] == ["Ravi"]
    # A minute later without a heartbeat, nobody is warned any more.
    with service.db.session() as session:
        for row in session.exec(select(InboxPresence)):
            row.seen_at = service.now() - timedelta(minutes=1)
            session.add(row)
    assert client.get(f"/inbox/escalations/{esc_id}/live").json()["others_here"] == []


def test_history_shows_earlier_escalations_and_every_order(service: Service, client: TestClient) -> None:
    add_order(service)
    add_order(service, order_id="A2002", payment_method="cod")
    escalate(service)
    first = _latest(service)
    inbox_login(client)
    _post(client, first, "resolve")
    say(service, "where is my order A1001")
    say(service, "I want to talk to a human")
    second = _latest(service)
    assert second != first
    page = client.get(f"/inbox/escalations/{second}").text
    history = page[page.index('id="history-title"'):]
    assert f'href="/inbox/escalations/{first}"' in history and "A1001" in history and "A2002" in history
    assert "COD pending" in history


def test_whatsapp_window_closed_offers_only_approved_templates(settings: Settings) -> None:
    settings = settings.model_copy(update={"twilio_whatsapp_templates": "agent_follow_up=HX123"})
    service = Service.create(settings, shop_overrides={"inbox": {"whatsapp_templates": [
        {"kind": "agent_follow_up", "label": "Follow up",
         "text": "Hi {{name}}, news about order {{order_id}}. Reply to continue."},
        {"kind": "not_approved", "label": "Nope", "text": "never offered"}]}})
    add_order(service, customer={"name": "Asha Rao", "channel": "whatsapp"})
    escalate(service, channel="whatsapp")
    esc_id = _latest(service)
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        page = client.get(f"/inbox/escalations/{esc_id}").text
        assert "WhatsApp window open" in page and 'name="text"' in page
        with service.db.session() as session:  # the customer's last message was 25 hours ago
            for message in session.exec(select(Message).where(Message.direction == "in")):
                message.created_at = service.now() - timedelta(hours=25)
                session.add(message)
        page = client.get(f"/inbox/escalations/{esc_id}").text
        assert "WhatsApp window closed" in page and 'id="template-picker"' in page
        assert "Hi Asha, news about order A1001. Reply to continue." in page and "never offered" not in page
        assert '<textarea id="reply-text"' not in page
        assert _post(client, esc_id, "reply", wa_template="not_approved").headers["location"].endswith(
            "?n=template_unknown")
        sent = _post(client, esc_id, "reply", wa_template="agent_follow_up")
        assert sent.headers["location"].endswith("?n=template_sent")
    with service.db.session() as session:
        message = session.exec(select(Message).where(Message.template == "agent_follow_up")).one()
        row = session.exec(select(Outbox).where(Outbox.message_id == message.id)).one()
        assert message.text == "Hi Asha, news about order A1001. Reply to continue."
        assert row.payload["template_vars"] == {"1": "Asha", "2": "A1001"} and row.payload["agent"] == "Meera"
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        live = client.get(f"/inbox/escalations/{esc_id}/live").json()
        assert "Meera" in live["html"] and "news about order A1001" in live["html"]  # shown as the agent's


def test_quick_replies_per_locale_with_variables_managed_by_supervisors(settings: Settings,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          request: pytest.FixtureRequest) -> None:
    service = Service.create(settings, shop_overrides={"inbox": {"quick_replies": {"es": [
        {"label": "Llamará", "text": "{{name}}, el repartidor te llamará antes de entregar {{order_id}}."}]}}})
    add_order(service, order_id="B2001", phone=MARIA, customer={"name": "María López", "locale": "es"})
    say(service, "¿dónde está mi pedido?", phone=MARIA)
    say(service, "quiero hablar con una persona", phone=MARIA)
    esc_id = _latest(service)
    agent_token = _token(settings, monkeypatch, request, "Ravi")
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)  # the API key: a supervisor
        page = client.get(f"/inbox/escalations/{esc_id}").text
        assert 'data-text="Gracias por esperar, María. Lo estoy revisando' in page
        assert 'data-text="María, el repartidor te llamará antes de entregar B2001."' in page  # doorstep.yaml
        assert "Looking into it" not in page  # English only when a language has none

        csrf = csrf_of(client.get("/inbox/quick-replies").text)
        bad = client.post("/inbox/quick-replies", data={"csrf": csrf, "locale": "es", "label": "X",
                                                        "text": "Hola {{surname}}"})
        assert bad.status_code == 422 and "unknown variable" in bad.text
        added = client.post("/inbox/quick-replies", data={"csrf": csrf, "locale": "es", "label": "Pedido en camino",
                                                          "text": "Tu pedido {{order_id}} ya está en camino."},
                            follow_redirects=False)
        assert added.status_code == 303
        dup = client.post("/inbox/quick-replies", data={"csrf": csrf, "locale": "es", "label": "Pedido en camino",
                                                        "text": "otra"})
        assert dup.status_code == 409
        assert 'data-text="Tu pedido B2001 ya está en camino."' in client.get(f"/inbox/escalations/{esc_id}").text
        listing = client.get("/inbox/quick-replies").text
        assert "Pedido en camino" in listing and "doorstep.yaml" in listing and "default" in listing
        reply_id = re.search(r'name="reply_id" value="(\d+)"', listing).group(1)  # type: ignore[union-attr]

        agent = TestClient(client.app)
        inbox_login(agent, token=agent_token)
        agent_csrf = csrf_of(agent.get("/inbox/quick-replies").text)
        assert agent.post(f"/inbox/quick-replies/{reply_id}/delete", data={"csrf": agent_csrf}).status_code == 403
        assert client.post(f"/inbox/quick-replies/{reply_id}/delete", data={"csrf": csrf},
                           follow_redirects=False).status_code == 303
        assert "Tu pedido B2001 ya está en camino" not in client.get(f"/inbox/escalations/{esc_id}").text



def test_erasing_the_customer_clears_what_agents_wrote_about_them(service: Service, client: TestClient) -> None:
    from tests.conftest import TEST_API_KEY

    add_order(service, customer={"name": "Asha Rao"})
    escalate(service)
    esc_id = _latest(service)
    inbox_login(client)
    _post(client, esc_id, "note", body="Asha Rao says her neighbour at 14 MG Road took it")
    _post(client, esc_id, "call", outcome="reached", body="Asha Rao will be home after 6")
    erased = client.delete(f"/api/customers/{PHONE}", headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert erased.status_code == 200, erased.text
    page = client.get(f"/inbox/escalations/{esc_id}").text
    assert "Asha Rao" not in page and "14 MG Road" not in page
    assert "call: reached" in page  # that the work was done stays
