"""`make run` on a busy port printed the once-shown API key, then failed to bind: the key
was lost with the failed start. `doorstep serve` now checks the port before anything."""

from __future__ import annotations

import os
import socket
import subprocess

from sqlmodel import select

from bot.core.models import KeyValue
from bot.core.settings import Settings
from bot.service import Service
from tests.support.server import DOORSTEP


def test_serve_on_a_busy_port_fails_clearly_and_shows_no_key(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOORSTEP_API_KEY"}
    env["DATABASE_URL"] = settings.database_url  # no DOORSTEP_API_KEY: serve would generate and show one
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in output and "--port" in output and f"PORT={port + 1}" in output
    assert "API key" not in output and "Traceback" not in output
    with Service.create(settings).db.read() as session:
        assert session.exec(select(KeyValue)).all() == []  # no key was generated for a server that never ran
