"""Agent replies and agent notifications leave through the outbox, with the real twilio
and aiogram clients against the loopback fakes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import select

from bot.app import create_app
from bot.core.models import Conversation, Message, Outbox
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from tests.fakes.telegram_server import BOT_TOKEN, FakeTelegram
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, WHATSAPP_FROM, FakeTwilio
from tests.handoff.helpers import PHONE, add_order, escalate

AGENT_CHAT = "-100555"


class AgentHook:
    """A loopback endpoint standing in for Slack/Mattermost: records posts, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hook.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/agents"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _with(settings: Settings, **update: Any) -> Settings:
    # The agents' hook and the fakes listen on loopback: an operator URL there needs the explicit setting.
    return settings.model_copy(update={"public_url": "https://doorstep.example.com", "allow_private_urls": True,
                                       **update})


def _twilio(fake: FakeTwilio) -> dict[str, Any]:
    return {"twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": SecretStr(AUTH_TOKEN), "twilio_sms_from": SMS_FROM,
            "twilio_whatsapp_from": WHATSAPP_FROM, "twilio_api_base_url": fake.url, "twilio_sms_rate": 1000.0,
            "twilio_whatsapp_rate": 1000.0}


def _drain(service: Service, rounds: int = 4) -> None:
    dispatcher = Dispatcher(service.db, service.settings, clock=service.runtime.clock)
    for _ in range(rounds):
        if asyncio.run(dispatcher.run_once_and_close()) == 0:
            break


def _escalation_id(client: TestClient, auth: dict[str, str]) -> int:
    return int(client.get("/api/escalations", headers=auth).json()["items"][0]["id"])


def test_agent_reply_reaches_the_customer_by_sms(settings: Settings, fake_twilio: FakeTwilio,
                                                 auth: dict[str, str]) -> None:
    service = Service.create(_with(settings, **_twilio(fake_twilio)))
    add_order(service)
    escalate(service, channel="sms")
    with TestClient(create_app(service=service)) as client:
        esc_id = _escalation_id(client, auth)
        body = client.post(f"/api/escalations/{esc_id}/reply", json={"text": "Hi Asha, Meera here.", "agent": "Meera"},
                           headers=auth).json()
        assert body["channel"] == "sms" and body["delivery"] == "free_form"
        _drain(service)
        texts = [m["body"] for m in fake_twilio.sent_to(PHONE)]
        assert "Hi Asha, Meera here." in texts
        line = client.get(f"/api/escalations/{esc_id}", headers=auth).json()["transcript"][-1]
        assert line["author"] == "Meera" and line["status"] in {"sent", "queued", "delivered"}
        assert line["channel"] == "sms" and line["fallback"] is False


def test_whatsapp_reply_outside_the_window_falls_back_to_sms_and_the_agent_sees_it(
        settings: Settings, fake_twilio: FakeTwilio, auth: dict[str, str]) -> None:
    now = [datetime.now(UTC)]
    service = Service.create(_with(settings, **_twilio(fake_twilio)), clock=lambda: now[0])
    add_order(service, customer={"channel": "whatsapp"})
    escalate(service, channel="whatsapp")
    _drain(service)  # the bot's own replies went out inside the window
    now[0] += timedelta(hours=30)  # the agent answers the next day
    with TestClient(create_app(service=service)) as client:
        esc_id = _escalation_id(client, auth)
        assert client.get(f"/api/escalations/{esc_id}", headers=auth).json()["whatsapp_window_open"] is False
        body = client.post(f"/api/escalations/{esc_id}/reply", json={"text": "Sorry for the wait, Asha."},
                           headers=auth).json()
        assert body["delivery"] == "whatsapp_template_or_sms_fallback" and body["whatsapp_window_open"] is False
        _drain(service)
        sent = [m for m in fake_twilio.sent_to(PHONE) if m["body"] == "Sorry for the wait, Asha."]
        assert [m["to"] for m in sent] == [PHONE]  # by SMS, not whatsapp:+91…
        line = client.get(f"/api/escalations/{esc_id}", headers=auth).json()["transcript"][-1]
        assert line["channel"] == "sms" and line["requested_channel"] == "whatsapp" and line["fallback"] is True


def test_new_escalation_notifies_agents_by_webhook_and_telegram(settings: Settings, fake_telegram: FakeTelegram,
                                                                auth: dict[str, str]) -> None:
    hook = AgentHook()
    try:
        service = Service.create(_with(settings, agent_webhook_url=hook.url, telegram_bot_token=SecretStr(BOT_TOKEN),
                                       telegram_api_base_url=fake_telegram.url, telegram_agent_chat_id=AGENT_CHAT))
        add_order(service)
        escalate(service)
        _drain(service)
        [(headers, body)] = hook.posts
        assert body["type"] == "escalation.created" and body["reason"] == "customer_asked"
        assert body["order_id"] == "A1001" and body["inbox_url"].endswith(f"/inbox/escalations/{body['escalation_id']}")
        assert headers["Doorstep-Notification-Id"] == f"esc_{body['escalation_id']}"
        [telegram] = fake_telegram.sent_to(AGENT_CHAT)
        assert "customer asked" in telegram["text"] and "order A1001" in telegram["text"]
        for text in (json.dumps(body), telegram["text"]):
            assert PHONE not in text and "Asha" not in text and "talk to a human" not in text
        with TestClient(create_app(service=service)) as client:
            assert client.get("/api/escalations", headers=auth).json()["items"][0]["notification"]["status"] == "sent"
    finally:
        hook.stop()


def test_undeliverable_notification_leaves_the_conversation_needing_a_human(settings: Settings,
                                                                            auth: dict[str, str]) -> None:
    hook = AgentHook(status=404)
    try:
        service = Service.create(_with(settings, agent_webhook_url=hook.url))
        add_order(service)
        escalate(service)
        _drain(service)
        assert len(hook.posts) == 1
        with service.db.session() as session:
            row = session.exec(select(Outbox).where(Outbox.kind == "agent_notify")).one()
            assert row.status == "failed" and "404" in (row.last_error or "")
            assert session.exec(select(Conversation)).one().owner == "waiting_human"
        with TestClient(create_app(service=service)) as client:
            [item] = client.get("/api/escalations?status=open", headers=auth).json()["items"]
            assert item["status"] == "open" and item["notification"]["status"] == "failed"
        # The bot still does not take the conversation back.
        from tests.handoff.helpers import say

        say(service, "hello?")
        assert say(service, "where is my order").replies == []
    finally:
        hook.stop()


def test_without_notification_targets_nothing_is_sent_and_nothing_breaks(settings: Settings) -> None:
    service = Service.create(_with(settings))
    add_order(service)
    escalate(service)
    _drain(service)
    with service.db.session() as session:
        row = session.exec(select(Outbox).where(Outbox.kind == "agent_notify")).one()
        assert row.status == "sent" and row.provider_id is None
        assert session.exec(select(Message).where(Message.direction == "out")).all()
