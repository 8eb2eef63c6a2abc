"""The agent inbox (/inbox) through HTTP: login, CSRF, list, conversation, reply, live updates, resolve."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from bot.app import create_app
from bot.cli.app import app as cli_app
from bot.core.models import Agent, Conversation, Customer, Message
from bot.core.settings import Settings, reset_settings_cache
from bot.service import Service
from tests.conftest import TEST_API_KEY
from tests.handoff.helpers import PHONE, add_order, csrf_of, escalate, inbox_login, say


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings)


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service=service)) as c:
        yield c


_csrf = csrf_of
login = inbox_login


def _escalation_id(client: TestClient) -> int:
    match = re.search(r'href="/inbox/escalations/(\d+)"', client.get("/inbox").text)
    assert match
    return int(match.group(1))


def test_inbox_needs_a_login_and_a_valid_key(client: TestClient) -> None:
    first = client.get("/inbox", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/inbox/login"
    assert client.get("/inbox/escalations/1", follow_redirects=False).headers["location"] == "/inbox/login"
    login(client, token="wrong-key")
    assert client.get("/inbox", follow_redirects=False).status_code == 303
    # A login post without the login page's CSRF token is refused.
    client.cookies.clear()
    forged = client.post("/inbox/login", data={"token": TEST_API_KEY, "csrf": "x"}, follow_redirects=False)
    assert "error=expired" in forged.headers["location"]
    assert client.get("/inbox", follow_redirects=False).status_code == 303
    # A tampered session cookie is not a session.
    login(client)
    cookie = client.cookies.get("doorstep_inbox")
    assert cookie
    client.cookies.clear()
    client.cookies.set("doorstep_inbox", cookie[:-3] + "AAA")
    assert client.get("/inbox", follow_redirects=False).status_code == 303


def test_session_cookie_is_httponly_strict_and_scoped(client: TestClient) -> None:
    page = client.get("/inbox/login")
    response = client.post("/inbox/login", data={"token": TEST_API_KEY, "csrf": _csrf(page.text)},
                           follow_redirects=False)
    set_cookie = response.headers["set-cookie"].lower()
    assert "doorstep_inbox=" in set_cookie and "httponly" in set_cookie
    assert "samesite=strict" in set_cookie and "path=/inbox" in set_cookie
    assert TEST_API_KEY.lower() not in set_cookie


def test_agent_works_an_escalation_end_to_end(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    login(client)
    listing = client.get("/inbox")
    assert "customer asked" in listing.text and "order A1001" in listing.text and "console" in listing.text
    assert "min left" in listing.text
    esc_id = _escalation_id(client)

    page = client.get(f"/inbox/escalations/{esc_id}")
    assert page.status_code == 200
    html = page.text
    assert re.search(r"human \d+%", html) and re.search(r"wismo \d+%", html)  # intents with confidence
    for expected in ("I want to talk to a human", "Delhivery", "Bengaluru",
                     "https://track.example.com/DL123", "Assign to me", "Resolve", "Need order number"):
        assert expected in html, expected
    assert f'<a href="tel:{PHONE}">{PHONE}</a>' in html  # an agent may call the customer (viewers see it masked)

    # A customer message arrives: the live endpoint reports it without a reload.
    version = re.search(r'data-version="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert client.get(f"/inbox/escalations/{esc_id}/live?v={version}").json()["changed"] is False
    say(service, "my parcel box was crushed")
    live = client.get(f"/inbox/escalations/{esc_id}/live?v={version}").json()
    assert live["changed"] is True and "my parcel box was crushed" in live["html"]
    assert "colleague will reply here shortly" in live["html"]  # the one acknowledgement, then silence
    say(service, "hello??")
    live = client.get(f"/inbox/escalations/{esc_id}/live?v={live['version']}").json()
    assert "hello??" in live["html"] and live["last_author"] == "customer"

    # Reply without the CSRF token: refused, nothing queued.
    refused = client.post(f"/inbox/escalations/{esc_id}/reply", data={"text": "hello"}, follow_redirects=False)
    assert refused.status_code == 403
    sent = client.post(f"/inbox/escalations/{esc_id}/reply",
                       data={"text": "Hi Asha, I'm sorry! Sending a replacement.", "csrf": _csrf(html)},
                       follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == f"/inbox/escalations/{esc_id}?n=sent"
    with service.db.session() as session:
        reply = session.exec(select(Message).order_by(Message.id.desc())).first()  # type: ignore[union-attr]
        assert reply is not None and reply.direction == "out" and reply.template == "agent:Meera"
        assert session.exec(select(Conversation)).one().owner == "human"
    after = client.get(f"/inbox/escalations/{esc_id}?n=sent").text
    assert "Sending a replacement." in after and "Reply queued" in after and "assigned · Meera" in after

    resolved = client.post(f"/inbox/escalations/{esc_id}/resolve", data={"csrf": _csrf(after)}, follow_redirects=False)
    assert resolved.status_code == 303
    assert "Nothing waiting" in client.get("/inbox").text
    with service.db.session() as session:
        assert session.exec(select(Conversation)).one().owner == "resolved"
    assert "A1001" in say(service, "where is my order").replies[0].text


def test_urls_never_carry_customer_data(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    login(client)
    esc_id = _escalation_id(client)
    pages = [client.get("/inbox").text, client.get(f"/inbox/escalations/{esc_id}").text]
    urls = [u for html in pages for u in re.findall(r'(?:href|action|src|data-live|data-poll)="([^"]+)"', html)]
    internal = [u for u in urls if u.startswith("/")]
    assert internal and all(re.fullmatch(r"/inbox(/[a-z._/-]+|/escalations/\d+(/[a-z]+)?)?", u)
                            for u in internal), internal


def test_agent_tokens_from_the_cli_log_in_and_revoke(service: Service, client: TestClient, settings: Settings,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    reset_settings_cache()  # the CLI reads the environment through the cached get_settings()
    request.addfinalizer(reset_settings_cache)
    runner = CliRunner()
    added = runner.invoke(cli_app, ["agents", "add", "Ravi"])
    assert added.exit_code == 0, added.output
    token = re.search(r"dat_[A-Za-z0-9_-]+", added.output).group(0)  # type: ignore[union-attr]
    with service.db.session() as session:
        agent = session.exec(select(Agent)).one()
        assert agent.name == "Ravi" and token not in agent.token_sha256  # only the hash is stored
    assert runner.invoke(cli_app, ["agents", "add", "Ravi"]).exit_code == 1

    add_order(service)
    escalate(service)
    login(client, token=token, name="someone else")
    page = client.get("/inbox")
    assert "Signed in as <strong>Ravi</strong>" in page.text
    listed = runner.invoke(cli_app, ["agents", "list"])
    assert "Ravi" in listed.output and "active" in listed.output and token not in listed.output

    assert runner.invoke(cli_app, ["agents", "revoke", "Ravi"]).exit_code == 0
    assert client.get("/inbox", follow_redirects=False).status_code == 303  # the open session ended
    login(client, token=token)
    assert client.get("/inbox", follow_redirects=False).status_code == 303


def test_bad_inbox_input_is_a_clear_4xx(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    login(client)
    esc_id = _escalation_id(client)
    csrf = _csrf(client.get(f"/inbox/escalations/{esc_id}").text)
    assert client.get("/inbox/escalations/424242").status_code == 404
    assert client.get("/inbox/escalations/99999999999999999999").status_code == 422
    empty = client.post(f"/inbox/escalations/{esc_id}/reply", data={"text": "  ", "csrf": csrf}, follow_redirects=False)
    assert empty.headers["location"].endswith("?n=empty")
    long = client.post(f"/inbox/escalations/{esc_id}/reply", data={"text": "x" * 5000, "csrf": csrf},
                       follow_redirects=False)
    assert long.headers["location"].endswith("?n=too_long")
    assert client.post(f"/inbox/escalations/{esc_id}/reply", content=b"\xff\xfe\x00" * 50,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code in (403, 422)
    with service.db.session() as session:
        assert session.exec(select(Message).where(Message.template == "agent:Meera")).first() is None


def test_guessing_tokens_is_throttled(client: TestClient) -> None:
    for _ in range(10):
        login(client, token="guess")
        assert client.get("/inbox", follow_redirects=False).status_code == 303
    page = client.get("/inbox/login")
    blocked = client.post("/inbox/login", data={"token": TEST_API_KEY, "csrf": _csrf(page.text)}, follow_redirects=False)
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.text
    assert client.get("/inbox", follow_redirects=False).status_code == 303  # even the right key waits


def test_refused_actions_tell_the_agent_why(service: Service, client: TestClient) -> None:
    """Each refusal of the store (by its error type) leads back to the conversation with its own notice."""
    add_order(service)
    escalate(service)
    login(client)
    esc_id = _escalation_id(client)
    csrf = _csrf(client.get(f"/inbox/escalations/{esc_id}").text)

    def post(action: str, **data: str) -> str:
        response = client.post(f"/inbox/escalations/{esc_id}/{action}", data={"csrf": csrf, **data},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        return response.headers["location"]

    with service.db.session() as session:
        bot_reply = session.exec(select(Message).where(Message.direction == "out")).first()
        assert bot_reply is not None  # queued for the console, never held
        customer = session.exec(select(Customer)).one()
        customer.opted_out_channels = ["console"]
        session.add(customer)
    assert post("reply", text="hello").endswith("?n=opted_out")
    assert post(f"held/{bot_reply.id}/send").endswith("?n=held_gone")
    assert client.post(f"/inbox/escalations/{esc_id}/held/999999/send", data={"csrf": csrf}).status_code == 404
    assert post("resolve") == "/inbox?n=resolved"
    assert post("assign").endswith("?n=closed")
    assert post("reply", text="hello").endswith("?n=closed")
    with service.db.session() as session:
        assert session.exec(select(Message).where(Message.template == "agent:Meera")).first() is None


def test_without_a_session_pages_go_to_the_login_and_scripts_get_401(service: Service, client: TestClient) -> None:
    add_order(service)
    escalate(service)
    login(client)
    esc_id = _escalation_id(client)
    csrf = _csrf(client.get(f"/inbox/escalations/{esc_id}").text)
    client.cookies.clear()
    assert client.get("/inbox/partials/list").status_code == 401
    live = client.get(f"/inbox/escalations/{esc_id}/live")
    assert live.status_code == 401 and live.json() == {"detail": "login required"}
    for action in ("reply", "assign", "resolve", "held/1/send"):
        response = client.post(f"/inbox/escalations/{esc_id}/{action}", data={"csrf": csrf, "text": "hi"},
                               follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/inbox/login", action
    with service.db.session() as session:
        assert session.exec(select(Conversation)).one().owner == "waiting_human"
