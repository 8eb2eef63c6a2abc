"""A fake Viber bot REST API on loopback (`POST /pa/send_message`, `POST /pa/set_webhook`).

Checks `X-Viber-Auth-Token` (a wrong token gets Viber's status 2), answers `status: 0` with a
`message_token`, and keeps what was sent. `fail_next(status)` scripts Viber's answer to the next
send_message (6: not subscribed, 12: too many requests, or an HTTP 500 with `http=500`).
`callback(...)` builds a signed Viber callback (message, delivered, seen, subscribed, …) the way Viber
posts it: the body and its `X-Viber-Content-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.twilio_server import LoopbackFake, LoopbackServer

AUTH_TOKEN = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"
_MESSAGES = {0: "ok", 2: "invalidAuthToken", 3: "badData", 5: "receiverNotRegistered", 6: "notSubscribed",
             12: "tooManyRequests"}


@dataclass
class FakeViber(LoopbackFake):
    token: str = AUTH_TOKEN
    sent: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    failures: deque[tuple[int, int]] = field(default_factory=deque)  # (http status, viber status)
    server: LoopbackServer | None = None
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(5741311803571721087))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, *, http: int = 200) -> None:
        self.failures.append((http, status))

    def sent_to(self, user_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if m["receiver"] == user_id]

    def app(self) -> Starlette:
        async def send_message(request: Request) -> JSONResponse:
            if request.headers.get("x-viber-auth-token") != self.token:
                return JSONResponse({"status": 2, "status_message": _MESSAGES[2]})
            body = await request.json()
            with self._lock:
                failure = self.failures.popleft() if self.failures else None
            if failure is not None:
                http, status = failure
                return JSONResponse({"status": status, "status_message": _MESSAGES.get(status, "error")},
                                    status_code=http)
            if not body.get("receiver") or not body.get("sender", {}).get("name"):
                return JSONResponse({"status": 3, "status_message": _MESSAGES[3]})
            token = next(self._tokens)
            with self._lock:
                self.sent.append({**body, "message_token": token, "_monotonic": time.monotonic()})
            return JSONResponse({"status": 0, "status_message": "ok", "message_token": token,
                                 "chat_hostname": "SN-CHAT-01_"})

        async def set_webhook(request: Request) -> JSONResponse:
            if request.headers.get("x-viber-auth-token") != self.token:
                return JSONResponse({"status": 2, "status_message": _MESSAGES[2]})
            body = await request.json()
            self.webhook = body
            return JSONResponse({"status": 0, "status_message": "ok", "event_types": body.get("event_types", [])})

        return Starlette(routes=[Route("/pa/send_message", send_message, methods=["POST"]),
                                 Route("/pa/set_webhook", set_webhook, methods=["POST"])])


def callback(event: str, *, token: str = AUTH_TOKEN, **fields: Any) -> tuple[bytes, dict[str, str]]:
    """A Viber callback body and its signature header, as Viber posts them."""
    payload = {"event": event, "timestamp": int(time.time() * 1000), "chat_hostname": "SN-CHAT-01_", **fields}
    body = json.dumps(payload).encode()
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Viber-Content-Signature": signature, "content-type": "application/json"}


def user(user_id: str, name: str = "Asha K", language: str = "en") -> dict[str, Any]:
    return {"id": user_id, "name": name, "avatar": "https://avatar.example.com/a.jpg", "country": "IN",
            "language": language, "api_version": 10}


def text_message(user_id: str, text: str, message_token: int) -> tuple[bytes, dict[str, str]]:
    return callback("message", message_token=message_token, sender=user(user_id),
                    message={"type": "text", "text": text})
