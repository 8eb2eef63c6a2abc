"""A `javascript:` media URL on an inbound message was stored and shown as an attachment link.

Twilio's media links are https; anything else in `MediaUrlN` is dropped at the
webhook, so neither the inbox nor Chatwoot ever gets it.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from bot.core.models import Message
from bot.core.settings import Settings
from bot.service import Service
from tests.channels.conftest import ASHA, PUBLIC_URL, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio


@pytest.fixture
def service(settings: Settings, fake_twilio: FakeTwilio) -> Service:
    return new_service(with_channels(settings, twilio=fake_twilio))


def test_only_web_media_links_are_stored(client: TestClient, service: Service, fake_twilio: FakeTwilio) -> None:
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    media = ("javascript:alert(document.cookie)", photo, "data:text/html,<script>alert(1)</script>")
    form, headers = fake_twilio.inbound(PUBLIC_URL, from_=f"whatsapp:{ASHA}", body="the box is damaged", sid="SMjs1",
                                        media=media)
    assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
    with service.db.read() as session:
        [inbound] = session.exec(select(Message).where(Message.direction == "in")).all()
    assert inbound.media_urls == [photo]
