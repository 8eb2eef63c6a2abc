"""End to end as a newcomer uses it: `doorstep serve` on a free port, an order
through the HTTP API, then `doorstep chat --say` in another process."""

from __future__ import annotations

import os
import subprocess

import httpx

from bot.core.settings import Settings
from tests.conftest import TEST_API_KEY
from tests.support.factories import order_payload
from tests.support.server import DOORSTEP, serve_subprocess


def test_order_via_api_then_customer_asks_on_the_console(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url, "DOORSTEP_API_KEY": TEST_API_KEY, "DOORSTEP_TIMEZONE": "Asia/Kolkata"}
    with serve_subprocess(env) as base:
        auth = {"Authorization": f"Bearer {TEST_API_KEY}"}
        created = httpx.post(f"{base}/api/orders", json=order_payload(), headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        shipped = httpx.post(f"{base}/api/orders/A1001/events", json={"type": "shipped"}, headers=auth, timeout=10)
        assert shipped.status_code == 201

        chat = subprocess.run([DOORSTEP, "chat", "--phone", "+919812345678", "--say", "where is my order"],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert chat.returncode == 0, chat.stderr
        reply = " ".join(chat.stdout.split())
        assert "A1001" in reply and "Delhivery" in reply and "https://track.example.com/DL123" in reply

        # The conversation is shared with the server: the order is unchanged and readable.
        assert httpx.get(f"{base}/api/orders/A1001", headers=auth, timeout=10).json()["status"] == "shipped"
        assert httpx.get(f"{base}/api/orders/A1001", timeout=10).status_code == 401
