"""Logs carry no phone numbers or secrets, one record per line, and JSON on request.

twilio's HTTP client logged each request's parameters (the recipient's number)
at INFO, and httpx logged webhook URLs with their tokens. `serve` and `worker`
log through bot.core.logs: noisy libraries at WARNING, every record redacted.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.core.channels import OutboundMessage
from bot.core.logs import redact, setup_logging
from bot.core.settings import Settings
from bot.delivery.dispatcher import Dispatcher
from bot.service import Service
from integrations.twilio_channel import TwilioSender
from tests.channels.conftest import ASHA, PUBLIC_URL, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import AUTH_TOKEN, FakeTwilio


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    setup_logging("DEBUG", "text", stream=buffer)
    # DEBUG at the root, to show the library loggers are held back by name, not by the root level.
    yield buffer
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def test_a_full_inbound_and_reply_logs_no_number_or_token(settings: Settings, fake_twilio: FakeTwilio,
                                                          captured: io.StringIO) -> None:
    service: Service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service)
    with TestClient(create_app(service=service)) as client:
        form, headers = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body="where is my order", sid="SMlog1")
        assert client.post("/webhooks/twilio", data=form, headers=headers).status_code == 200
        drain(Dispatcher(service.db, service.settings))
    assert fake_twilio.sent_to(ASHA)
    # Crash recovery looks the reply up by recipient: twilio logs the query (To=<number>) at INFO.
    sender = TwilioSender(service.settings, "sms")
    asyncio.run(sender.reconcile(OutboundMessage(outbox_id=1, message_id=1, channel="sms", to=ASHA, text="x")))
    text = captured.getvalue()
    assert text, "nothing was logged at all"
    for secret in (ASHA, ASHA[1:], "9812345678", AUTH_TOKEN, "test-api-key-0123456789abcdef"):
        assert secret not in text, secret
    assert all(line.count(": ") >= 1 for line in text.splitlines())  # one record per line, each with its logger


def test_redaction_masks_numbers_and_secrets_whoever_logs_them() -> None:
    line = redact("to=+919812345678 via whatsapp:+14155550123 Authorization: Bearer abc.def-123 "
                  "url=https://hooks.example.com/x?token=s3cret&a=1 key=dsk_AbCdEf0123456789 order A1001 2026-11-28")
    assert "9812345678" not in line and "4155550123" not in line
    assert "abc.def-123" not in line and "s3cret" not in line and "AbCdEf0123456789" not in line
    assert "order A1001 2026-11-28" in line  # order ids and dates are not personal data


def test_json_lines_for_log_pipelines() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        setup_logging("INFO", "json", stream=buffer)
        logging.getLogger("bot.test").info("reply to %s\nsecond line", "+919812345678")
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
    [line] = buffer.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "bot.test" and "9812345678" not in entry["message"]
