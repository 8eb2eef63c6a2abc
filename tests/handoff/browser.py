"""What the inbox's browser tests share: a real uvicorn serving Doorstep, waits, chromium's flags,
and where screenshots go (tests/artifacts/; docs/ only with DOORSTEP_UPDATE_DOCS=1)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from bot.app import create_app
from bot.service import Service
from tests.support.server import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS = ROOT / "docs"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def uvicorn_server(service: Service, port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(create_app(service=service, workers=True), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


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
