"""End to end, as it runs in production: a real uvicorn server with the dispatcher and
scheduler, a customer rescheduling over SMS (signed Twilio webhooks), and a logistics
endpoint that verifies with the reference `standardwebhooks` library — including the
endpoint being down when the customer says yes. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
from pydantic import SecretStr

from bot.app import create_app
from bot.core.schemas import OrderEventIn, OrderIn
from bot.core.settings import Settings
from bot.service import Service
from bot.store.orders import apply_event, get_order, today_in, upsert_order
from tests.conftest import TEST_API_KEY
from tests.fakes.logistics_receiver import LogisticsReceiver
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support.factories import order_payload
from tests.support.server import serve_in_thread

SECRET = "whsec_" + base64.b64encode(b"e2e-logistics-secret-0123456789ab").decode()
PUBLIC_URL = "https://doorstep.example.com"
ASHA = "+919812345678"


def _sms(base: str, twilio: FakeTwilio, text: str) -> None:
    form, headers = twilio.inbound(PUBLIC_URL, from_=ASHA, body=text)
    response = httpx.post(f"{base}/webhooks/twilio", data=form, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def _wait_for_reply(twilio: FakeTwilio, count: int) -> str:
    sent = twilio.wait_for(count, timeout=15)
    assert len(sent) >= count, "the bot answered over SMS"
    return str(sent[count - 1].get("body", ""))


def test_sms_reschedule_reaches_the_logistics_endpoint_at_once_and_after_it_was_down(make_service: Callable[..., Service],
        settings: Settings) -> None:
    receiver = LogisticsReceiver(secret=SECRET).start()
    twilio = FakeTwilio().start()
    try:
        configured = settings.model_copy(update={
            "public_url": PUBLIC_URL, "twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": SecretStr(AUTH_TOKEN),
            "twilio_sms_from": SMS_FROM, "twilio_api_base_url": twilio.url, "twilio_sms_rate": 1000.0,
            "logistics_webhook_url": receiver.url, "logistics_webhook_secret": SecretStr(SECRET),
            "logistics_allow_private": True, "quiet_hours": ""})
        service = make_service(configured)
        with service.db.session() as session:
            order, _ = upsert_order(session=session, order_in=OrderIn.model_validate(order_payload()))
            session.flush()
            apply_event(session=session, order=order, event_in=OrderEventIn(type="shipped"))
        day = today_in("Asia/Kolkata", service.now()) + timedelta(days=2)
        if day.weekday() == 6:
            day += timedelta(days=1)

        with serve_in_thread(create_app(service=service, workers=True)) as base:
            # First reschedule: the endpoint is up.
            _sms(base, twilio, f"please deliver it on {day.day} {day.strftime('%B')} instead")
            assert day.strftime("%b") in _wait_for_reply(twilio, 1)
            _sms(base, twilio, "yes")
            [delivery] = receiver.wait_for(1, timeout=5)  # no retry backoff in between (how fast: a benchmark's job)
            assert delivery.verified and delivery.payload is not None
            assert delivery.payload["type"] == "delivery.rescheduled"
            assert delivery.payload["data"]["order_id"] == "A1001"
            assert delivery.payload["data"]["delivery_date"] == day.isoformat()

            # Second reschedule while the endpoint is down: it arrives once it is back.
            later = day + timedelta(days=1)
            if later.weekday() == 6:
                later += timedelta(days=1)
            receiver.stop()
            _sms(base, twilio, f"actually deliver on {later.day} {later.strftime('%B')}")
            _wait_for_reply(twilio, 3)
            _sms(base, twilio, "yes")
            _wait_for_reply(twilio, 4)
            time.sleep(1.0)  # the first try fails against the closed port
            receiver.start()
            deliveries = receiver.wait_for(2, timeout=15)  # the retry 5 s later (±10 %)
            assert len(deliveries) == 2 and deliveries[1].verified
            assert deliveries[1].payload is not None
            assert deliveries[1].payload["data"]["delivery_date"] == later.isoformat()
            assert deliveries[1].webhook_id != deliveries[0].webhook_id

            # The same events, same ids, in the feed.
            feed = httpx.get(f"{base}/api/events", headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=10)
            assert [e["id"] for e in feed.json()["events"]] == [d.webhook_id for d in deliveries]
            assert [e["delivery"]["status"] for e in feed.json()["events"]] == ["sent", "sent"]
        with service.db.session() as session:
            assert get_order(session=session, order_id="A1001").delivery_date == later
    finally:
        receiver.stop()
        twilio.stop()
