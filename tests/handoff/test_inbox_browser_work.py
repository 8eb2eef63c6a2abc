"""A real browser does post-purchase casework in the inbox: Playwright drives Debian's chromium against a
real uvicorn (dispatcher and scheduler running); customers write through the signed Twilio webhook and
every message to them reaches the fake Twilio server on loopback.

Covers finding work (views, counts, search by keyboard), acting on the order from the card (reschedule,
COD), the customer's photo inline through the proxy, quick replies with variables, notes, the
"also open by" warning, opt-in notifications, the CSAT tap after the resolve, and the 390 px layout.
Screenshots go to tests/artifacts/; `DOORSTEP_UPDATE_DOCS=1` copies them to docs/ (see docs/inbox.md).
"""

from __future__ import annotations

import re
import struct
import zlib
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from bot.core.models import Escalation, Order
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

RAVI = "+919876543210"


def parcel_photo(width: int = 240, height: int = 160) -> bytes:
    """A small PNG of a brown parcel with a crushed (dark) corner: the customer's photo."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            crushed = x + y < 70
            edge = x < 6 or y < 6 or x >= width - 6 or y >= height - 6
            row += bytes((70, 45, 25) if crushed else (120, 80, 40) if edge else (181, 134, 84))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


SCREENSHOTS = ("inbox-list.png", "inbox-order-actions.png", "inbox-phone.png", "inbox-phone-list.png")


def test_an_agent_finds_works_and_closes_post_purchase_cases_in_a_real_browser(tmp_path: Path,
                                                                               chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # shared, slow CI machines; every wait ends as soon as the page is right
    twilio = FakeTwilio().start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = inbox_settings(tmp_path, base_url, twilio, allow_private_urls=True)  # the fake's media are on loopback
    service = Service.create(settings, shop_overrides={"inbox": {"csat": True}})
    add_order(service, customer={"name": "Asha Rao"})
    add_order(service, order_id="A1002", phone=RAVI, payment_method="cod", tracking_number="BD777",
              customer={"name": "Ravi Kumar"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photo = twilio.add_media("image/png", parcel_photo())

    def says(phone: str, text: str, media: tuple[str, ...] = ()) -> None:
        customer_writes(twilio, base_url, phone, text, media)

    def bodies(phone: str) -> list[str]:
        return [m["body"] for m in twilio.sent_to(phone)]

    today = service.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    day = today + timedelta(days=2)
    while day.weekday() == 6:  # the default calendar has no Sunday deliveries
        day += timedelta(days=1)

    try:
        with uvicorn_server(service, port), sync_playwright() as p:
            says(PHONE, "where is my order")
            says(PHONE, "the box looks crushed, here is a photo", media=(photo,))
            says(PHONE, "I want to talk to a human")
            says(RAVI, "I want to talk to a person")
            wait_until(lambda: any("colleague" in b for b in bodies(PHONE)) and any("colleague" in b for b in bodies(RAVI)),
                       what="both hand-offs")

            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(["notifications"], origin=base_url)
            page = context.new_page()
            log_in(page, base_url, name="Meera")

            # Finding work: the views and their counts; a search by keyboard (posted, not in the URL).
            views = page.get_by_role("navigation", name="Views")
            expect(views.locator('[data-count="open"]')).to_have_text("2")
            expect(views.locator('[data-count="unassigned"]')).to_have_text("2")
            expect(views.locator('[data-count="mine"]')).to_have_text("0")
            expect(page.locator(".esc")).to_have_count(2)
            page.screenshot(path=str(ARTIFACTS / "inbox-list.png"))
            search = page.get_by_role("searchbox", name="Search")
            page.locator("body").press("/")  # the keyboard way in
            expect(search).to_be_focused()
            page.keyboard.type("bd777")
            page.keyboard.press("Enter")
            expect(page.locator(".esc")).to_have_count(1)
            expect(page.locator(".esc")).to_contain_text("Ravi Kumar")
            assert "bd777" not in page.url.lower()
            page.get_by_role("button", name=re.compile("^Open")).click()
            expect(page.locator(".esc")).to_have_count(1)  # a view's tab keeps the search
            page.goto(f"{base_url}/inbox")

            # Notifications on (this browser only).
            toggle = page.get_by_role("button", name="Notifications: off")
            toggle.click()
            expect(page.get_by_role("button", name="Notifications: on")).to_be_visible()

            page.locator(".esc", has_text="Asha Rao").locator("a").click()
            # The customer's photo, inline through Doorstep's proxy.
            image = page.locator("#transcript .media img").first
            expect(image).to_have_attribute("src", re.compile(r"^/inbox/media/\d+/1$"))
            wait_until(lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="the photo")
            expect(page.locator("#phone a")).to_have_attribute("href", f"tel:{PHONE}")

            # Act on the order from the card, by keyboard: reschedule.
            summary = page.locator("#act-reschedule summary")
            summary.focus()
            page.keyboard.press("Enter")
            page.get_by_label("New day").fill(day.isoformat())
            page.get_by_label("Window").select_option("evening")
            page.screenshot(path=str(ARTIFACTS / "inbox-order-actions.png"), full_page=True)
            page.locator("#act-reschedule").get_by_role("button", name="Reschedule").click()
            expect(page.get_by_role("status").first).to_contain_text("logistics is told")
            wait_until(lambda: any(b.startswith("Done! Order A1001 will be delivered on") for b in bodies(PHONE)),
                       what="the customer's confirmation by SMS")
            expect(page.locator(".timeline")).to_contain_text("rescheduled A1001")
            with service.db.session() as session:
                order = session.exec(select(Order).where(Order.order_id == "A1001")).one()
                assert order.delivery_date == day and order.delivery_window == "evening"

            # A note for colleagues, and a quick reply with the customer's name filled in.
            page.get_by_label("Add an internal note").fill("Photo shows a crushed corner; replacement if damaged.")
            page.get_by_role("button", name="Add note").click()
            expect(page.locator(".timeline")).to_contain_text("crushed corner")
            page.get_by_role("button", name="Anything else?").click()
            expect(page.get_by_label("Reply to the customer on sms")).to_have_value(
                "Is there anything else I can help you with today, Asha?")

            # A colleague opens the same conversation: both are warned.
            other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in(other, base_url, name="Ravi S")
            other.goto(page.url.split("?")[0])
            expect(other.locator("#others-here")).to_contain_text("Meera")
            expect(page.locator("#others-here")).to_contain_text("Ravi S")  # live, within a few polls
            other.context.close()

            # The customer answers in the conversation Meera owns: a notification (titles only) and a chime.
            says(PHONE, "thanks, any news on the replacement?")
            expect(page.locator("#transcript")).to_contain_text("any news on the replacement")
            expect(page.locator("body")).to_have_attribute("data-notified", re.compile(r"^[1-9]"))
            expect(page.locator("#notify-live")).to_contain_text("Customer replied")

            # On a phone screen the conversation and the list fit without sideways scrolling.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
            phone.context.add_cookies(context.cookies())
            phone.goto(page.url.split("?")[0])
            expect(phone.locator("#transcript")).to_contain_text("any news on the replacement")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            phone.screenshot(path=str(ARTIFACTS / "inbox-phone.png"), full_page=True)
            phone.goto(f"{base_url}/inbox")
            expect(phone.locator(".esc").first).to_be_visible()
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            phone.screenshot(path=str(ARTIFACTS / "inbox-phone-list.png"), full_page=True)
            phone.context.close()

            # Resolve with the CSAT question; the customer's tap is stored and shown.
            expect(page.get_by_label("Ask the customer to rate the help (1-5, one tap)")).to_be_checked()
            page.get_by_role("button", name="Resolve & hand back to bot").click()
            expect(page.locator('[data-count="resolved"]')).to_have_text("1")
            wait_until(lambda: any("1 (poor) to 5 (great)" in b for b in bodies(PHONE)), what="the CSAT question")
            says(PHONE, "5")
            wait_until(lambda: any("5/5" in b for b in bodies(PHONE)), what="the thank-you")
            page.get_by_role("button", name=re.compile("^Resolved")).click()
            expect(page.locator(".esc", has_text="Asha Rao")).to_contain_text("CSAT 5/5")
            with service.db.session() as session:
                escalation = session.exec(select(Escalation).where(Escalation.csat_score.is_not(None))).one()  # type: ignore[union-attr]
                assert escalation.csat_score == 5

            # Ravi's COD order, confirmed on the phone with him, from the card.
            page.get_by_role("button", name=re.compile("^Open")).click()
            page.locator(".esc", has_text="Ravi Kumar").locator("a").click()
            page.get_by_role("button", name="Customer confirms COD").click()
            expect(page.get_by_role("status").first).to_contain_text("logistics is told")
            wait_until(lambda: any("A1002" in b and "confirmed" in b.lower() for b in bodies(RAVI)),
                       what="the COD confirmation to Ravi")
            browser.close()
    finally:
        twilio.stop()
    publish_screenshots(*SCREENSHOTS)
