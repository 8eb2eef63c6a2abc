"""SMS replies went out with en dashes, curly quotes and emoji, so Twilio sent them as UCS-2:
70 characters a part instead of 160, about twice the cost.

Templates are GSM-7 now (tests/flows/test_sms_text.py renders them all); these tests cover the
send boundary, where dynamic values such as a product name bring typographic punctuation in.
"""

from __future__ import annotations

import asyncio

from bot.core.channels import InboundMessage
from bot.core.gsm7 import is_gsm7, non_gsm7, segments
from bot.core.settings import Settings
from bot.delivery.dispatcher import LEASE, Dispatcher
from tests.channels.conftest import ASHA, Clock, add_order, drain, new_service, with_channels
from tests.fakes.twilio_server import FakeTwilio

PRODUCT = "Wireless headphones \u2013 \u201cPro\u201d edition\u2026"  # as a shop's catalogue writes it


def test_a_reply_naming_a_typographic_product_goes_out_as_gsm7(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service, items=[{"sku": "HP-1", "name": PRODUCT, "qty": 1, "price": "1299.00"}])
    handled = service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone=ASHA,
                                                    provider_message_id="SMgsm7-1"))
    assert handled.replies, "the bot answered"
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    body = sent["body"]
    assert 'Wireless headphones - "Pro" edition...' in body
    assert is_gsm7(body), f"characters that force UCS-2: {non_gsm7(body)}"
    assert segments(body) == 1


def test_whatsapp_keeps_the_text_as_written(settings: Settings, fake_twilio: FakeTwilio) -> None:
    service = new_service(with_channels(settings, twilio=fake_twilio))
    add_order(service, items=[{"sku": "HP-1", "name": PRODUCT, "qty": 1, "price": "1299.00"}])
    service.handle_inbound(InboundMessage(channel="whatsapp", text="where is my order", phone=ASHA,
                                          provider_message_id="SMgsm7-2"))
    drain(Dispatcher(service.db, service.settings))
    [sent] = fake_twilio.sent_to(ASHA)
    assert PRODUCT in sent["body"]  # WhatsApp has no 7-bit alphabet: nothing to save


def test_a_crashed_send_of_a_normalised_sms_is_reconciled_not_sent_twice(
        settings: Settings, fake_twilio: FakeTwilio) -> None:
    """Twilio stores the body as sent (plain dashes); the crash check must look for that text."""
    clock = Clock()
    service = new_service(with_channels(settings, twilio=fake_twilio), clock=clock)
    add_order(service, items=[{"sku": "HP-1", "name": PRODUCT, "qty": 1, "price": "1299.00"}])
    service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone=ASHA,
                                          provider_message_id="SMgsm7-3"))
    crashed = Dispatcher(service.db, service.settings, clock=clock, worker_id="crashed-worker")
    [claimed] = crashed.claim()
    sender = crashed.sender_for("message:sms")
    assert sender is not None and claimed.message is not None
    assert "\u2013" in claimed.message.text
    asyncio.run(sender.send(claimed.message))  # accepted by Twilio ... and the worker died before recording it
    clock.advance(seconds=LEASE.total_seconds() + 1)
    survivor = Dispatcher(service.db, service.settings, clock=clock, worker_id="survivor")
    assert asyncio.run(survivor.run_once_and_close()) == 1
    assert len(fake_twilio.sent_to(ASHA)) == 1, "the reply was sent twice"
