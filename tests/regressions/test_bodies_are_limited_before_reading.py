"""Request bodies are limited before they are read, on every route, over real HTTP (the app's middleware;
slow senders are cut off by `serve`'s protocol, see test_bodies_read_whole_before_auth.py).

Eight unauthenticated 100 MB POSTs took `serve` from 252 MB to 1.2 GB: bodies
were read whole before the signature or key was checked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bot.app import create_app
from bot.core.settings import Settings
from bot.service import Service
from tests.support.server import serve_in_thread


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    service = Service.create(settings)
    with serve_in_thread(create_app(service=service)) as url:
        yield url
    service.db.dispose()


def _raw(base_url: str, head: bytes, body_parts: list[bytes] = (), pause: float = 0.0) -> tuple[int, float]:  # type: ignore[assignment]
    host, port = base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        try:
            for part in body_parts:
                conn.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        answer = conn.recv(4096)
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


@pytest.mark.parametrize("path", ["/webhooks/twilio", "/webhooks/telegram", "/api/orders", "/rasa/webhook",
                                  "/webhooks/carrier", "/inbox/login"])
def test_a_huge_declared_body_is_refused_before_a_byte_is_read(base_url: str, path: str) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000000\r\n\r\n").encode()
    status, seconds = _raw(base_url, head)  # no body sent at all: the answer cannot have waited for it
    assert status == 413 and seconds < 5


def test_a_chunked_body_is_cut_off_at_the_limit(base_url: str) -> None:
    head = b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 65536
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(40)]  # 2.6 MB > 1 MB
    status, _ = _raw(base_url, head, parts)
    assert status == 413


def test_ordinary_requests_are_untouched(base_url: str) -> None:
    import httpx

    assert httpx.get(f"{base_url}/healthz", timeout=5).status_code in (200, 503)
    response = httpx.post(f"{base_url}/api/orders", json={"order_id": "A1"}, timeout=5)
    assert response.status_code == 401  # reached the route: the key check answers
