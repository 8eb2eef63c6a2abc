"""Request bodies were read whole before authentication: eight unauthenticated 100 MB POSTs took
`serve` from 252 MB to 1.2 GB, and a client sending its headers a byte at a time held its
connection forever.

Through real HTTP against `doorstep serve`: a declared oversize body is refused
unread (413), a chunked one is cut off at the limit, memory stays flat, an
oversize header block is refused, and slow senders are disconnected after
DOORSTEP_REQUEST_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bot.core.settings import Settings
from bot.service import Service
from tests.conftest import TEST_API_KEY
from tests.support.server import DOORSTEP, free_port, wait_healthy

REQUEST_TIMEOUT = 2.0
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """`doorstep serve` as a user runs it: (host, port, pid)."""
    home = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{home / 'doorstep.db'}", "DOORSTEP_API_KEY": TEST_API_KEY,
           "DOORSTEP_CONFIG": "none.yaml", "DOORSTEP_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
           "TWILIO_AUTH_TOKEN": "twilio-test-token"}
    proc = subprocess.Popen([DOORSTEP, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-workers"],
                            env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=60, proc=proc)
        yield "127.0.0.1", port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _status_line(sock: socket.socket) -> str:
    sock.settimeout(10)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def test_a_declared_oversize_body_is_refused_unread(server: tuple[str, int, int]) -> None:
    host, port, _ = server
    for path in ("/webhooks/twilio", "/api/orders", "/webhooks/telegram", "/inbox/login", "/rasa/webhook"):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {100 * MB}\r\n\r\n".encode())
            assert _status_line(sock) == "HTTP/1.1 413 Request Entity Too Large", path


def test_an_oversize_header_block_is_refused(server: tuple[str, int, int]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(8):  # 64 KB of headers, in the pieces a client streams them in
                sock.sendall(b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 200) for i in range(40)))
                time.sleep(0.05)
        except OSError:
            pass  # refused and closed while we were still sending: what we want
        with contextlib.suppress(OSError):  # the close may reach us before the answer: refused all the same
            assert _status_line(sock) == "HTTP/1.1 400 Bad Request"
        assert _closed_within(sock, 5), "the connection stays open after an oversize header block"
    with socket.create_connection((host, port)) as sock:  # an ordinary header block of 15 KB is fine
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 15000 + b"\r\n\r\n")
        assert _status_line(sock) == "HTTP/1.1 200 OK"


def _stream_chunked(host: str, port: int, path: str, total: int, answers: list[str]) -> None:
    with socket.create_connection((host, port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"x" * (256 * 1024)
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            for _ in range(total // len(chunk)):
                sock.sendall(frame)
        except OSError:
            pass  # the server stopped reading and closed: what we want
        try:
            answers.append(_status_line(sock))
        except OSError:
            answers.append("closed")


def test_eight_unauthenticated_streamed_uploads_leave_memory_flat(server: tuple[str, int, int]) -> None:
    host, port, pid = server
    before = _rss_mb(pid)
    answers: list[str] = []
    threads = [threading.Thread(target=_stream_chunked, args=(host, port, "/api/orders", 100 * MB, answers))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 8
    assert all(a in {"HTTP/1.1 413 Request Entity Too Large", "closed"} for a in answers), answers
    assert _rss_mb(pid) - before < 60, f"serve grew from {before:.0f} MB to {_rss_mb(pid):.0f} MB"
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=5).status_code == 200


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Send `trickle` a byte every 0.3 s; True when the server closes the connection in time."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.3)
    index = 0
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
        if trickle:
            try:
                sock.sendall(trickle[index % len(trickle):index % len(trickle) + 1])
            except OSError:
                return True
            index += 1
    return False


def test_slow_senders_are_disconnected(server: tuple[str, int, int]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as silent:
        assert _closed_within(silent, REQUEST_TIMEOUT + 3), "a connection that sends nothing stays open"
    with socket.create_connection((host, port)) as loris:
        loris.sendall(b"POST /webhooks/twilio HTTP/1.1\r\nHost: x\r\n")
        assert _closed_within(loris, REQUEST_TIMEOUT + 3, trickle=b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), \
            "a client trickling its headers holds the connection"
    with socket.create_connection((host, port)) as slow_body:
        slow_body.sendall(b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        assert _closed_within(slow_body, REQUEST_TIMEOUT + 3, trickle=b" "), "a body trickling in holds the connection"
    # An ordinary client is not hurt: keep-alive requests on one connection within the deadline work.
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.5)


@pytest.fixture
def service(settings: Settings) -> Service:
    return Service.create(settings.model_copy(update={"max_body_bytes": 64 * 1024}))


def test_limits_are_per_route_with_a_default(client: TestClient, auth: dict[str, str]) -> None:
    big = b"{" + b" " * (300 * 1024) + b"}"
    # Twilio's route keeps its own 256 KiB; Rasa's trackers may be larger than the default.
    assert client.post("/webhooks/twilio", content=big, headers={"x-twilio-signature": "x"}).status_code == 413
    assert client.post("/api/orders", content=big, headers={**auth, "content-type": "application/json"}
                       ).status_code == 413
    assert client.post("/rasa/webhook", content=big, params={"token": "wrong"}).status_code != 413

    def stream() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 1024

    response = client.post("/api/orders", content=stream(), headers={**auth, "content-type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["detail"]
