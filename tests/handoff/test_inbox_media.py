"""Attachments inline through the inbox's safe proxy: real HTTP to the fake Twilio's media on loopback."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select

from bot.app import create_app
from bot.core.channels import InboundMessage
from bot.core.models import Message
from bot.core.settings import Settings
from bot.service import Service
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.handoff.helpers import PHONE, add_order, escalate, inbox_login

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def _service(settings: Settings, twilio: FakeTwilio, *, private: bool = True, credentials: bool = True) -> Service:
    settings = settings.model_copy(update={
        "twilio_account_sid": ACCOUNT_SID if credentials else "", "twilio_auth_token": SecretStr(AUTH_TOKEN),
        "twilio_api_base_url": twilio.url, "allow_private_urls": private})
    return Service.create(settings)


def _photo_message(service: Service, *urls: str) -> int:
    add_order(service)
    service.handle_inbound(InboundMessage(channel="console", text="the box arrived crushed", phone=PHONE,
                                          media_urls=urls, provider_message_id=f"t-{uuid.uuid4()}"))
    escalate(service)
    with service.db.session() as session:
        return next(m.id for m in session.exec(select(Message).where(Message.direction == "in")
                                               .order_by(col(Message.id))) if m.media_urls)  # type: ignore[misc]


def test_an_image_is_shown_inline_and_nothing_else_gets_through(settings: Settings, twilio: FakeTwilio) -> None:
    service = _service(settings, twilio)
    message_id = _photo_message(service, twilio.add_media("image/png", PNG),
                                twilio.add_media("text/html", b"<script>alert(1)</script>"),
                                twilio.add_media("image/jpeg", b"\xff" * (5 * 1024 * 1024 + 10)))
    with TestClient(create_app(service=service)) as client:
        assert client.get(f"/inbox/media/{message_id}/1").status_code == 401  # no session
        inbox_login(client)
        page = client.get(re.search(r'href="(/inbox/escalations/\d+)"', client.get("/inbox").text).group(1)).text  # type: ignore[union-attr]
        assert f'<img src="/inbox/media/{message_id}/1"' in page and twilio.url not in page
        image = client.get(f"/inbox/media/{message_id}/1")
        assert image.status_code == 200 and image.content == PNG and image.headers["content-type"] == "image/png"
        assert image.headers["x-content-type-options"] == "nosniff" and "sandbox" in image.headers["content-security-policy"]
        not_image = client.get(f"/inbox/media/{message_id}/2")
        assert not_image.status_code == 415 and "<script>" not in not_image.text
        assert client.get(f"/inbox/media/{message_id}/3").status_code == 413
        assert client.get(f"/inbox/media/{message_id}/4").status_code == 404
        assert client.get("/inbox/media/999999/1").status_code == 404
    assert all(r.get("host", "").startswith("127.0.0.1") for r in twilio.requests)


def test_private_addresses_are_refused_and_twilio_media_need_the_account(settings: Settings,
                                                                         twilio: FakeTwilio) -> None:
    service = _service(settings, twilio, private=False)
    message_id = _photo_message(service, twilio.add_media("image/png", PNG))
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        refused = client.get(f"/inbox/media/{message_id}/1")
        assert refused.status_code == 403 and "not allowed" in refused.json()["detail"]
        assert twilio.url not in refused.text
    assert not twilio.requests  # never fetched

    service = _service(settings, twilio, credentials=False)
    with TestClient(create_app(service=service)) as client:
        inbox_login(client)
        assert client.get(f"/inbox/media/{message_id}/1").status_code == 502  # Twilio wants its credentials
