"""Reaching the customer and replying, in a real browser: Playwright drives Debian's chromium against a
real uvicorn (dispatcher and scheduler running); customers write through the signed Twilio webhook and
every message to them reaches the fake Twilio server on loopback.

Covers the roles (a viewer sees the phone masked and cannot call; an agent calls and records the
outcome), the WhatsApp 24-hour window (free text while open, the approved-template picker once closed)
and quick replies (a supervisor adds one for a language, an agent inserts it with its variables filled).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import select

from bot.core.clock import FakeClock, system_clock
from bot.core.models import EscalationNote, Message, QuickReply
from bot.service import Service
from tests.fakes.twilio_server import FakeTwilio
from tests.handoff.browser import (
    CHROMIUM_ARGS,
    customer_writes,
    inbox_settings,
    log_in,
    uvicorn_server,
    wait_until,
)
from tests.handoff.helpers import PHONE, add_agent, add_order
from tests.support.server import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

MARIA = "+34699111222"


@contextmanager
def inbox_with_browser(tmp_path: Path, chromium_path: str, *, clock: FakeClock | None = None,
                       settings_updates: dict[str, Any] | None = None,
                       shop_overrides: dict[str, Any] | None = None) -> Iterator[tuple[Service, FakeTwilio, str, Browser]]:
    """A served Doorstep (fake Twilio behind it) and a launched chromium, torn down in order."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # shared, slow CI machines; every wait ends as soon as the page is right
    twilio = FakeTwilio().start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    service = Service.create(inbox_settings(tmp_path, base_url, twilio, **(settings_updates or {})), clock=clock,
                             shop_overrides=shop_overrides)
    try:
        with uvicorn_server(service, port), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            try:
                yield service, twilio, base_url, browser
            finally:
                browser.close()
    finally:
        twilio.stop()


def on_a_phone(browser: Browser, signed_in: Page) -> Page:
    """`signed_in`'s page again, in the same session, on a 390 px phone screen."""
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    phone.context.add_cookies(signed_in.context.cookies())  # type: ignore[arg-type]
    phone.goto(signed_in.url)
    return phone


def fits(page: Page) -> bool:
    """No sideways scrolling."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


def hand_off(twilio: FakeTwilio, base_url: str, phone: str, *texts: str) -> None:
    """The customer writes `texts` (the last asks for a person) and gets the hand-off message."""
    for text in texts:
        customer_writes(twilio, base_url, phone, text)
    number = phone.removeprefix("whatsapp:")
    wait_until(lambda: len(twilio.sent_to(number)) >= len(texts), what="the bot's answers and the hand-off")


def test_a_viewer_sees_the_phone_masked_and_an_agent_calls_and_records_the_outcome(tmp_path: Path,
                                                                                   chromium_path: str) -> None:
    from playwright.sync_api import expect

    with inbox_with_browser(tmp_path, chromium_path) as (service, twilio, base_url, browser):
        add_order(service, customer={"name": "Asha Rao"})
        viewer_token = add_agent(service, "Vee", "viewer")
        agent_token = add_agent(service, "Ravi", "agent")
        hand_off(twilio, base_url, PHONE, "where is my order", "I want to talk to a human")

        viewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(viewer, base_url, viewer_token)
        expect(viewer.locator(".role")).to_have_text("(viewer)")
        viewer.locator(".esc", has_text="Asha Rao").locator("a").click()
        expect(viewer.locator("#phone")).to_have_text("+91******5678")
        expect(viewer.locator('a[href^="tel:"]')).to_have_count(0)
        expect(viewer.get_by_label("After the call")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Save call outcome")).to_have_count(0)
        assert "9812345678" not in viewer.content()  # not hidden with CSS: never sent to a viewer
        viewer.context.close()

        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(page, base_url, agent_token)
        expect(page.locator(".role")).to_have_text("(agent)")
        page.locator(".esc", has_text="Asha Rao").locator("a").click()
        call = page.locator("#phone").get_by_role("link", name=PHONE)
        expect(call).to_have_attribute("href", f"tel:{PHONE}")
        # After the call, by keyboard: pick the outcome, type what was agreed, Enter submits.
        outcome = page.get_by_label("After the call")
        outcome.focus()
        outcome.select_option("no_answer")
        page.keyboard.press("Tab")
        expect(page.get_by_placeholder("What was agreed (optional)")).to_be_focused()
        page.keyboard.type("rang twice, will try after 6 pm")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text("Call outcome recorded")
        call_note = page.locator(".timeline .kind-call")
        expect(call_note).to_contain_text("call: no answer")
        expect(call_note).to_contain_text("Ravi")
        expect(call_note).to_contain_text("rang twice, will try after 6 pm")
        with service.db.session() as session:
            [note] = session.exec(select(EscalationNote).where(EscalationNote.kind == "call")).all()
            assert (note.outcome, note.author, note.body) == ("no_answer", "Ravi", "rang twice, will try after 6 pm")


def test_whatsapp_free_text_while_the_window_is_open_and_an_approved_template_once_it_closes(
        tmp_path: Path, chromium_path: str) -> None:
    from playwright.sync_api import expect

    clock = FakeClock(system_clock())
    templates = {"inbox": {"whatsapp_templates": [
        {"kind": "agent_follow_up", "label": "Follow up",
         "text": "Hi {{name}}, news about order {{order_id}}. Reply to continue."},
        {"kind": "agent_call_me", "label": "Please call",
         "text": "Hi {{name}}, we tried to reach you about order {{order_id}}. Reply to talk to us."}]}}
    approved = "agent_follow_up=HX0a11,agent_call_me=HX0b22"
    with inbox_with_browser(tmp_path, chromium_path, clock=clock, shop_overrides=templates,
                            settings_updates={"twilio_whatsapp_templates": approved}) as (
            service, twilio, base_url, browser):
        add_order(service, customer={"name": "Asha Rao", "channel": "whatsapp"})
        hand_off(twilio, base_url, f"whatsapp:{PHONE}", "where is my order", "I want to talk to a human")

        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(page, base_url, name="Meera")
        page.locator(".esc", has_text="Asha Rao").locator("a").click()
        conversation = page.url
        expect(page.locator("#wa-window")).to_have_text("WhatsApp window open")
        expect(page.locator("#template-picker")).to_have_count(0)
        box = page.get_by_label("Reply to the customer on whatsapp")
        box.fill("Hi Asha, Meera here: your parcel is at the Bengaluru hub.")
        box.press("Control+Enter")
        expect(page.get_by_role("status").first).to_contain_text("Reply queued")
        wait_until(lambda: any(m["body"] == "Hi Asha, Meera here: your parcel is at the Bengaluru hub."
                               and m["to"] == f"whatsapp:{PHONE}" and not m["content_sid"]
                               for m in twilio.sent_to(PHONE)), what="the free-text reply on WhatsApp")

        # A day later (the shift's session has ended too): the customer has not written for 25 hours.
        clock.advance(timedelta(hours=25))
        log_in(page, base_url, name="Meera")
        page.goto(conversation)
        expect(page.locator("#wa-window")).to_contain_text("WhatsApp window closed: pick an approved template")
        expect(page.get_by_label("Reply to the customer on whatsapp")).to_have_count(0)
        picker = page.get_by_role("group", name="Approved WhatsApp templates")
        first = picker.get_by_role("radio", name=re.compile("^Follow up"))
        expect(first).to_be_checked()
        expect(picker).to_contain_text("Hi Asha, news about order A1001. Reply to continue.")
        # By keyboard: the arrow moves to the second template, Tab reaches the button, Enter sends.
        first.focus()
        page.keyboard.press("ArrowDown")
        expect(picker.get_by_role("radio", name=re.compile("^Please call"))).to_be_checked()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Send template")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text("Template queued")
        expect(page.locator("#transcript .msg.agent").last).to_contain_text("we tried to reach you about order A1001")

        def templates_sent() -> list[dict[str, Any]]:
            return [m for m in twilio.sent_to(PHONE) if m["content_sid"]]

        wait_until(templates_sent, what="the template at the fake Twilio")
        [sent] = templates_sent()
        assert sent["content_sid"] == "HX0b22" and sent["to"] == f"whatsapp:{PHONE}"
        assert json.loads(sent["content_variables"]) == {"1": "Asha", "2": "A1001"}
        phone = on_a_phone(browser, page)  # the picker on a phone screen
        expect(phone.get_by_role("button", name="Send template")).to_be_visible()
        assert fits(phone)
        with service.db.session() as session:
            message = session.exec(select(Message).where(Message.template == "agent_call_me")).one()
            assert message.text == "Hi Asha, we tried to reach you about order A1001. Reply to talk to us."


def test_a_supervisor_adds_a_spanish_quick_reply_and_an_agent_sends_it_filled_in(tmp_path: Path,
                                                                                 chromium_path: str) -> None:
    from playwright.sync_api import expect

    with inbox_with_browser(tmp_path, chromium_path) as (service, twilio, base_url, browser):
        add_order(service, order_id="B2001", phone=MARIA, customer={"name": "María López", "locale": "es"})
        agent_token = add_agent(service, "Ravi", "agent")
        hand_off(twilio, base_url, MARIA, "¿dónde está mi pedido?", "quiero hablar con una persona")

        boss = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(boss, base_url, name="Sofía")  # the API key: a supervisor
        boss.get_by_role("link", name="Quick replies").click()
        form = boss.get_by_role("region", name="Add a quick reply")
        form.get_by_label("Language").select_option("es")
        form.get_by_label("Label (the button)").fill("Pedido en camino")
        form.get_by_label("Text").fill("Hola {{name}}, tu pedido {{order_id}} ya está en camino.")
        form.get_by_role("button", name="Add").click()
        expect(boss.get_by_role("status").first).to_contain_text("Quick reply saved")
        spanish = boss.get_by_role("region", name="es", exact=True)
        expect(spanish).to_contain_text("Pedido en camino")
        expect(spanish).to_contain_text("Hola {{name}}, tu pedido {{order_id}} ya está en camino.")
        with service.db.session() as session:
            saved = session.exec(select(QuickReply).where(QuickReply.label == "Pedido en camino")).one()
            assert (saved.locale, saved.updated_by) == ("es", "Sofía")
        phone = on_a_phone(browser, boss)  # the management page on a phone screen
        expect(phone.get_by_role("region", name="es", exact=True)).to_contain_text("Pedido en camino")
        assert fits(phone)
        boss.context.close()

        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(page, base_url, agent_token)
        page.locator(".esc", has_text="María López").locator("a").click()
        quick = page.get_by_role("group", name="Quick replies (es)")
        expect(quick.get_by_role("button", name="Looking into it")).to_have_count(0)  # English only as a fallback
        box = page.get_by_label("Reply to the customer on sms")
        box.fill("Perdona la espera.")  # a draft: the quick reply goes in at the cursor, the draft stays
        button = quick.get_by_role("button", name="Pedido en camino")
        button.focus()
        page.keyboard.press("Enter")
        expect(box).to_be_focused()
        reply = "Perdona la espera. Hola María, tu pedido B2001 ya está en camino."
        expect(box).to_have_value(reply)
        page.keyboard.press("Control+Enter")
        expect(page.get_by_role("status").first).to_contain_text("Reply queued")
        wait_until(lambda: reply in [m["body"] for m in twilio.sent_to(MARIA)],
                   what="the filled-in quick reply at the fake Twilio")
        expect(page.locator("#transcript .msg.agent").last).to_contain_text("Ravi")
