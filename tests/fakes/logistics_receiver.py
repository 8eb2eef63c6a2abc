"""A logistics system's webhook endpoint, on loopback, that verifies every delivery
with the reference `standardwebhooks` library (exactly what a consumer would do).

`responses` is a queue of (status, headers) to answer with before falling back
to 200; `stop()` / `start()` take the endpoint down and up on the same port.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict[str, Any] | None
    answered: int


@dataclass
class LogisticsReceiver:
    secret: str
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    responses: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/doorstep"

    def start(self) -> LogisticsReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = None, False
                with receiver._lock:
                    status, extra = receiver.responses.popleft() if receiver.responses else (200, {})
                if not verified:
                    status, extra = 401, {}
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                with receiver._arrived:
                    receiver.deliveries.append(Delivery(headers.get("webhook-id", ""), headers, body, verified,
                                                        payload, status))
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Block until at least `count` deliveries arrived (any status); returns them."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            return list(self.deliveries)

    def accepted(self) -> list[dict[str, Any]]:
        """Payloads a consumer would process: verified, answered 2xx, deduped on webhook-id."""
        seen: dict[str, dict[str, Any]] = {}
        for delivery in self.deliveries:
            if delivery.verified and 200 <= delivery.answered < 300 and delivery.payload is not None:
                seen.setdefault(delivery.webhook_id, delivery.payload)
        return list(seen.values())


def payload_json(delivery: Delivery) -> dict[str, Any]:
    return json.loads(delivery.body)  # type: ignore[no-any-return]
