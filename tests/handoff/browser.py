"""What the inbox's browser tests share: a real uvicorn serving Doorstep, its settings pointed at the
fake Twilio, the customer writing through the signed webhook, logging in from the page, waits,
chromium's flags, and where screenshots go (tests/artifacts/; docs/ only with DOORSTEP_UPDATE_DOCS=1)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from bot.app import create_app
from bot.core.settings import Settings
from bot.service import Service
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, WHATSAPP_FROM, FakeTwilio
from tests.support.server import serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS = ROOT / "docs"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def inbox_settings(tmp_path: Path, base_url: str, twilio: FakeTwilio, **updates: Any) -> Settings:
    """Doorstep on SQLite in `tmp_path`, serving `base_url`, sending through the fake Twilio."""
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'inbox.db'}", DOORSTEP_API_KEY=TEST_API_KEY,
                        DOORSTEP_TIMEZONE="Asia/Kolkata", DOORSTEP_CONFIG="does-not-exist.yaml", DOORSTEP_ENV="test",
                        DOORSTEP_PUBLIC_URL=base_url)
    return settings.model_copy(update={
        "twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": SecretStr(AUTH_TOKEN), "twilio_sms_from": SMS_FROM,
        "twilio_whatsapp_from": WHATSAPP_FROM, "twilio_api_base_url": twilio.url, "twilio_sms_rate": 1000.0,
        **updates})


def customer_writes(twilio: FakeTwilio, base_url: str, phone: str, text: str, media: tuple[str, ...] = ()) -> None:
    """The customer's message, as Twilio's signed webhook brings it (`phone` may be `whatsapp:+…`)."""
    form, headers = twilio.inbound(base_url, from_=phone, body=text, media=media)
    assert httpx.post(f"{base_url}/webhooks/twilio", data=form, headers=headers, timeout=10).status_code == 200


def log_in(page: Page, base_url: str, token: str = TEST_API_KEY, name: str = "") -> None:
    """Log in from the inbox's login page (a name only matters with the API key) and wait for the list."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/inbox/login")
    page.get_by_label("Agent token or API key").fill(token)
    if name:
        page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def uvicorn_server(service: Service, port: int) -> AbstractContextManager[str]:
    """`doorstep serve` in a thread (dispatcher and scheduler included) on `port`; yields the base URL."""
    return serve_in_thread(create_app(service=service, workers=True), port)


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def publish_screenshots(*names: str) -> None:
    """With DOORSTEP_UPDATE_DOCS=1, copy these screenshots from tests/artifacts/ to docs/ (the README's
    pictures); never by default: a test run must not change tracked files."""
    if os.environ.get("DOORSTEP_UPDATE_DOCS") != "1":
        return
    DOCS.mkdir(exist_ok=True)
    for name in names:
        shutil.copyfile(ARTIFACTS / name, DOCS / name)
