"""Shared steps for the handoff tests: add an order or an agent, talk as the customer, escalate."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from bot.cli.agents import new_agent_token, token_digest
from bot.conversation.gateway import Handled
from bot.core.channels import InboundMessage
from bot.core.models import Agent
from bot.core.schemas import OrderIn
from bot.service import Service
from bot.store.orders import upsert_order
from tests.conftest import TEST_API_KEY
from tests.support.factories import order_payload

PHONE = "+919812345678"


def add_order(service: Service, **kw: Any) -> None:
    with service.db.session() as session:
        upsert_order(session=session, order_in=OrderIn.model_validate(order_payload(**kw)))


def say(service: Service, text: str, phone: str = PHONE, channel: str = "console") -> Handled:
    return service.handle_inbound(InboundMessage(channel=channel, text=text, phone=phone,
                                                 provider_message_id=f"t-{uuid.uuid4()}"))


def escalate(service: Service, phone: str = PHONE, channel: str = "console") -> Handled:
    """A customer with one order asks where it is, then asks for a person."""
    say(service, "where is my order", phone=phone, channel=channel)
    handled = say(service, "I want to talk to a human", phone=phone, channel=channel)
    assert any(t.escalated for t in handled.turns)
    return handled


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on an inbox page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "form has no CSRF field"
    return match.group(1)


def inbox_login(client: TestClient, token: str = TEST_API_KEY, name: str = "Meera") -> None:
    page = client.get("/inbox/login")
    response = client.post("/inbox/login", data={"token": token, "name": name, "csrf": csrf_of(page.text)},
                           follow_redirects=False)
    assert response.status_code == 303


def add_agent(service: Service, name: str, role: str) -> str:
    """An inbox agent with `role`, as `doorstep agents add NAME --role ROLE` makes one; returns their token."""
    token = new_agent_token()
    with service.db.session() as session:
        session.add(Agent(name=name, token_sha256=token_digest(token), role=role))
    return token
