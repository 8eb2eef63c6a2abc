"""A real browser works a shift in the inbox: Playwright drives Debian's chromium against a
real uvicorn (dispatcher and scheduler running), the customer writes through the signed
Twilio webhook, and the agent's reply reaches the fake Twilio server on loopback.

Saves screenshots under tests/artifacts/ (ignored by git). With
DOORSTEP_UPDATE_DOCS=1 the conversation view is also copied to docs/inbox.png
for the README (not by default: a test run must not change tracked files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.service import Service
from tests.fakes.twilio_server import FakeTwilio
from tests.handoff.browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    customer_writes,
    inbox_settings,
    log_in,
    publish_screenshots,
    uvicorn_server,
    wait_until,
)
from tests.handoff.helpers import PHONE, add_order
from tests.support.server import free_port

pytestmark = pytest.mark.browser


def test_agent_logs_in_reads_context_replies_and_resolves_in_a_real_browser(tmp_path: Path,
                                                                            chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Generous waits: CI machines are shared and slow; every wait still ends as soon as the page is right.
    expect.set_options(timeout=30_000)

    twilio = FakeTwilio().start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    service = Service.create(inbox_settings(tmp_path, base_url, twilio))
    add_order(service, customer={"name": "Asha Rao"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def customer_says(text: str) -> None:
        customer_writes(twilio, base_url, PHONE, text)

    def bodies() -> list[str]:
        return [m["body"] for m in twilio.sent_to(PHONE)]

    try:
        with uvicorn_server(service, port), sync_playwright() as p:
            customer_says("where is my order")
            wait_until(lambda: any("A1001" in b for b in bodies()), what="the bot's WISMO answer by SMS")
            customer_says("I want to talk to a human")
            wait_until(lambda: any("colleague" in b for b in bodies()), what="the handoff message by SMS")

            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base_url}/inbox")
            assert page.url.endswith("/inbox/login")  # not logged in yet
            log_in(page, base_url, name="Meera")
            expect(page.get_by_text("Signed in as")).to_contain_text("Meera")

            row = page.locator(".esc").first
            expect(row).to_contain_text("customer asked")
            expect(row).to_contain_text("order A1001")
            expect(row).to_contain_text("sms")
            expect(row.locator(".last")).to_have_text("I want to talk to a human")
            expect(row.locator(".sla")).to_contain_text("left")  # the live countdown
            page.screenshot(path=str(ARTIFACTS / "inbox-list.png"))
            row.locator("a").click()

            # The context: reason, order card, transcript with intents.
            expect(page.locator("#reason")).to_have_text("customer asked")
            order = page.locator(".order")
            for fact in ("A1001", "Delhivery", "Bengaluru", "prepaid"):
                expect(order).to_contain_text(fact)
            expect(order.get_by_role("link", name="Track the parcel")).to_have_attribute(
                "href", "https://track.example.com/DL123")
            transcript = page.locator("#transcript")
            expect(transcript).to_contain_text("I want to talk to a human")
            expect(transcript.locator(".chip.intent").last).to_contain_text("human")
            expect(page.locator("#phone a")).to_have_attribute("href", f"tel:{PHONE}")  # agents may call
            assert "/inbox/escalations/" in page.url and PHONE.strip("+") not in page.url

            # The customer writes again: it appears without a reload.
            customer_says("it was a gift, I need it by Friday")
            expect(transcript).to_contain_text("it was a gift, I need it by Friday")

            # Quick reply, edit, send from the keyboard (Ctrl+Enter).
            page.get_by_role("button", name="Looking into it").click()
            box = page.get_by_label("Reply to the customer on sms")
            expect(box).to_have_value("Thanks for waiting. I'm looking into this now and will update you in a few minutes.")
            box.fill("Hi Asha, Meera here. I'll make sure it arrives by Friday.")
            box.press("Control+Enter")
            expect(page.get_by_role("status").first).to_contain_text("Reply queued")
            wait_until(lambda: "Hi Asha, Meera here. I'll make sure it arrives by Friday." in bodies(),
                       what="the agent's reply at the fake Twilio server")
            agent_line = transcript.locator(".msg.agent").last
            expect(agent_line).to_contain_text("Meera")
            expect(agent_line).to_contain_text("queued via sms")  # accepted by Twilio
            [sent] = [m for m in twilio.sent_to(PHONE) if m["body"].startswith("Hi Asha, Meera here.")]
            assert twilio.status_callback(sent, "delivered").status_code == 200
            expect(agent_line).to_contain_text("delivered via sms")  # live, from the callback
            expect(page.locator("#owner")).to_have_text("human")
            page.screenshot(path=str(ARTIFACTS / "inbox-conversation.png"), full_page=True)

            # On a phone screen the page fits without sideways scrolling.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.context.add_cookies(page.context.cookies())
            phone.goto(page.url)
            expect(phone.locator("#transcript")).to_contain_text("arrives by Friday")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            phone.screenshot(path=str(ARTIFACTS / "inbox-phone.png"), full_page=True)

            page.get_by_role("button", name="Resolve & hand back to bot").click()
            expect(page.get_by_text("Nothing waiting")).to_be_visible()
            browser.close()

            # Handed back: the bot answers the customer's next message itself.
            sent_before = len(bodies())
            customer_says("where is my order")
            wait_until(lambda: len(bodies()) > sent_before, what="the bot's answer after hand-back")
            assert "A1001" in bodies()[-1]
    finally:
        twilio.stop()
    shutil.copyfile(ARTIFACTS / "inbox-conversation.png", ARTIFACTS / "inbox.png")
    publish_screenshots("inbox.png")
