"""Logs contained phone numbers (the twilio library logs every API call at INFO, with the
recipient) and secrets (httpx logs the agent webhook URL with its token).

A full inbound + reply + escalation path through `doorstep serve`, real HTTP to
the fake Twilio and a loopback agent hook: the process's log holds no phone
number and no token, each record is one line, and DOORSTEP_LOG_FORMAT=json
gives one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.core.logs import RedactingFilter, redact, setup_logging
from tests.conftest import TEST_API_KEY
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, FakeTwilio
from tests.support.factories import order_payload
from tests.support.server import DOORSTEP, free_port, wait_healthy

PUBLIC_URL = "https://doorstep.example.com"
ASHA = "+919812345678"
HOOK_SECRET = "hook-secret-5f2b9c7d"
CHATWOOT_TOKEN = "chatwoot-query-token-77aa"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


class AgentHook:
    """A loopback Slack-style incoming webhook that records what it gets."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                hook.posts.append(json.loads(self.rfile.read(int(self.headers.get("content-length", "0")))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/agents?token={HOOK_SECRET}"


@pytest.fixture
def hook() -> Iterator[AgentHook]:
    agent_hook = AgentHook()
    yield agent_hook
    agent_hook.server.shutdown()
    agent_hook.server.server_close()


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _serve_and_talk(tmp_path: Path, fake_twilio: FakeTwilio, hook: AgentHook, log_format: str) -> str:
    """Run the whole path through `doorstep serve`; returns everything it logged."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'doorstep.db'}", "DOORSTEP_API_KEY": TEST_API_KEY,
           "DOORSTEP_CONFIG": "none.yaml", "DOORSTEP_PUBLIC_URL": PUBLIC_URL, "DOORSTEP_QUIET_HOURS": "",
           "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_SMS_FROM": SMS_FROM,
           "TWILIO_API_BASE_URL": fake_twilio.url, "DOORSTEP_AGENT_WEBHOOK_URL": hook.url,
           "DOORSTEP_ALLOW_PRIVATE_URLS": "true", "DOORSTEP_ACCESS_LOG": "true", "DOORSTEP_LOG_FORMAT": log_format,
           "CHATWOOT_WEBHOOK_TOKEN": "another-token-entirely"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, timeout=60, proc=proc)
            auth = {"Authorization": f"Bearer {TEST_API_KEY}"}
            assert httpx.post(f"{base}/api/orders", json=order_payload(), headers=auth, timeout=10).status_code == 201
            for sid, text in (("SMlog1", "where is my order"), ("SMlog2", "I want to talk to a human")):
                form, headers = fake_twilio.inbound(PUBLIC_URL, from_=ASHA, body=text, sid=sid)
                assert httpx.post(f"{base}/webhooks/twilio", data=form, headers=headers, timeout=10).status_code == 200
            # A webhook whose token rides in the query string (refused, but it reaches the access log).
            assert httpx.post(f"{base}/webhooks/chatwoot?token={CHATWOOT_TOKEN}", json={}, timeout=10).status_code == 401
            _wait(lambda: len(fake_twilio.sent_to(ASHA)) >= 2 and hook.posts)
            time.sleep(0.5)  # let the last records be written
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return log_path.read_text()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_log_of_a_whole_conversation_has_no_phone_or_token(tmp_path: Path, fake_twilio: FakeTwilio,
                                                                hook: AgentHook, log_format: str) -> None:
    log = _serve_and_talk(tmp_path, fake_twilio, hook, log_format)
    assert "/webhooks/twilio" in log, "the access log line is missing: nothing was checked"
    for secret in ("9812345678", "919812345678", HOOK_SECRET, CHATWOOT_TOKEN, TEST_API_KEY, AUTH_TOKEN):
        assert secret not in log, f"{secret!r} is in the log"
    lines = [line for line in log.splitlines() if line.strip()]
    if log_format == "json":
        def whole_record(line: str) -> bool:
            try:
                return isinstance(json.loads(line), dict)
            except ValueError:
                return False

        assert all(whole_record(line) for line in lines), [line for line in lines if not whole_record(line)]
        records = [json.loads(line) for line in lines]  # every line is one whole record
        assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    else:
        assert all(LINE_START.match(line) for line in lines), [line for line in lines if not LINE_START.match(line)]


def test_redaction_masks_what_slips_through() -> None:
    text = redact(f"To=%2B919812345678 from whatsapp:{ASHA} call +1 (555) 000-1234 Authorization: Bearer abcdef123456 "
                  f"url=https://user:pw@example.com/x?token={HOOK_SECRET}&n=1 whsec_QUJDREVGR0g= "
                  "bot 123456789:AAHk-abcdefghijklmnopqrstuvwxyz012345")
    for leaked in ("9812345678", "5550001234", "abcdef123456", HOOK_SECRET, "user:pw", "QUJDREVGR0g",
                   "AAHk-abcdefghijklmnopqrstuvwxyz012345"):
        assert leaked not in text, leaked
    assert "+**********78" in text and "&n=1" in text and "example.com/x" in text  # what helps debugging stays


def test_a_traceback_stays_on_its_line_and_is_redacted() -> None:
    import io

    stream = io.StringIO()
    handler = setup_logging("INFO", "text", stream=stream)
    try:
        try:
            raise ValueError(f"send to {ASHA} failed")
        except ValueError:
            logging.getLogger("bot.test").exception("delivery to %s failed", ASHA)
        logging.getLogger("twilio.http_client").info("PAYLOAD: {'To': '%s'}", ASHA)  # quiet by default
        logging.getLogger("httpx").info("HTTP Request: POST %s", f"http://x/hook?token={HOOK_SECRET}")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert output.count("\n") == 1 and "Traceback" in output and "ValueError" in output
    assert "9812345678" not in output and HOOK_SECRET not in output
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)


STRAY = f"""
import gc, threading, warnings
from bot.core.logs import setup_logging
setup_logging("INFO", "json")

class LeftOpen:
    def __del__(self):
        raise RuntimeError("closing failed for {ASHA}")

LeftOpen()
gc.collect()
warnings.warn("unclosed connection", ResourceWarning, stacklevel=1)
thread = threading.Thread(target=lambda: 1 / 0, name="sender")
thread.start()
thread.join()
"""


def test_what_python_prints_outside_logging_stays_in_the_json_log() -> None:
    """aiohttp's and psycopg's complaints at exit come as warnings and "Exception ignored in"
    lines, which Python prints to stderr itself: routed through logging, they are JSON records too."""
    import sys

    done = subprocess.run([sys.executable, "-W", "always", "-c", STRAY], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON record: {line!r}") from None
    text = " ".join(json.dumps(r) for r in records)
    assert "closing failed" in text and "unclosed connection" in text and "ZeroDivisionError" in text
    assert "9812345678" not in done.stderr  # and redacted like any record
