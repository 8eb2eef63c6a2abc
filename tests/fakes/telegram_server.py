"""A fake Telegram Bot API on loopback, spoken to by the real aiogram `Bot`.

Serves `POST /bot<token>/<method>` for sendMessage, setWebhook,
getWebhookInfo, answerCallbackQuery and getMe; aiogram posts multipart form
data, with nested objects (reply_markup) as JSON strings. A wrong token gets
Telegram's 401. `fail_next(...)` scripts the next sendMessage answers: 429
with `retry_after`, 403 "bot was blocked by the user", 400, 500, or a delay.

It enforces Telegram's limits like Telegram: more than 30 sendMessage in any
sliding second for the bot, or more than one in any sliding second to one chat,
is answered 429 with `retry_after` (and counted in `too_many`);
`max_in_any_second()` is the most messages it accepted in any one second.

`update(...)` builds Telegram `Update` JSON the way Telegram posts it to a
webhook (text, /start deep links, shared contacts, button presses).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.twilio_server import LoopbackFake, LoopbackServer, max_in_any_second

BOT_TOKEN = "123456789:AAFakeTokenForDoorstepTests_0123456789"
BOT_ID = 123456789
_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
}


@dataclass
class TgFailure:
    status: int
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class FakeTelegram(LoopbackFake):
    token: str = BOT_TOKEN
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: deque[TgFailure] = field(default_factory=deque)
    webhook: dict[str, Any] = field(default_factory=dict)
    server: LoopbackServer | None = None
    global_per_second: int = 30
    per_chat_per_second: int = 1
    too_many: list[dict[str, Any]] = field(default_factory=list)  # sendMessage answered 429 for a limit
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, *, retry_after: int | None = None, delay: float = 0.0, times: int = 1) -> None:
        for _ in range(times):
            self.failures.append(TgFailure(status, retry_after, delay))

    def sent_to(self, chat_id: int | str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if str(m["chat_id"]) == str(chat_id)]

    def max_in_any_second(self, chat_id: int | str | None = None) -> int:
        with self._lock:
            sent = [m for m in self.sent if chat_id is None or str(m["chat_id"]) == str(chat_id)]
        return max_in_any_second([m["_monotonic"] for m in sent])

    def _over_limit(self, chat_id: str, now: float) -> bool:
        """Would one more message now make more than the limits in the last second? (under the lock)"""
        recent = [m for m in reversed(self.sent[-(self.global_per_second + 1):]) if now - m["_monotonic"] < 1.0]
        if len(recent) >= self.global_per_second:
            return True
        same_chat = 0
        for m in reversed(self.sent):
            if now - m["_monotonic"] >= 1.0:
                break
            same_chat += str(m["chat_id"]) == chat_id
        return same_chat >= self.per_chat_per_second

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.sent) >= count:
                    return list(self.sent)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} messages at fake Telegram, got {len(self.sent)}")

    # ------------------------------------------------------------ the app

    @staticmethod
    def _error(status: int, retry_after: int | None = None) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": status,
                                "description": _DESCRIPTIONS.get(status, "Error").format(retry_after=retry_after)}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return JSONResponse(body, status_code=status)

    async def method(self, request: Request) -> Response:
        token, name = request.path_params["token"], request.path_params["method"]
        if request.headers.get("content-type", "").startswith("application/json"):
            params: dict[str, Any] = await request.json()
        else:
            params = {k: str(v) for k, v in (await request.form()).items()}
        with self._lock:
            self.calls.append((name, params))
        if token != self.token:
            return self._error(401)
        if name == "getMe":
            return JSONResponse({"ok": True, "result": {"id": BOT_ID, "is_bot": True, "first_name": "Doorstep",
                                                        "username": "doorstep_test_bot"}})
        if name == "setWebhook":
            self.webhook = dict(params)
            return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})
        if name == "getWebhookInfo":
            return JSONResponse({"ok": True, "result": {"url": self.webhook.get("url", ""),
                                                        "has_custom_certificate": False, "pending_update_count": 0}})
        if name == "answerCallbackQuery":
            return JSONResponse({"ok": True, "result": True})
        if name != "sendMessage":
            return self._error(400)
        failure = self.failures.popleft() if self.failures else None
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.status >= 400:
                return self._error(failure.status, failure.retry_after)
        markup = params.get("reply_markup")
        now = time.monotonic()
        with self._lock:
            if self._over_limit(str(params.get("chat_id")), now):
                self.too_many.append({"chat_id": params.get("chat_id"), "_monotonic": now})
                return self._error(429, retry_after=1)
            message_id = next(self._ids)
            record = {"chat_id": params.get("chat_id"), "text": params.get("text", ""), "message_id": message_id,
                      "reply_markup": json.loads(markup) if isinstance(markup, str) and markup else markup,
                      "_monotonic": now}
            self.sent.append(record)
        chat_id = int(str(params.get("chat_id")))
        return JSONResponse({"ok": True, "result": {
            "message_id": message_id, "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Customer"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Doorstep"}, "text": record["text"]}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/bot{token}/{method}", self.method, methods=["POST", "GET"])])


_update_ids = itertools.count(100_000)


def update(chat_id: int, *, text: str | None = None, contact_phone: str | None = None,
           contact_user_id: int | None = None, callback_data: str | None = None,
           update_id: int | None = None, chat_type: str = "private") -> dict[str, Any]:
    """A Telegram Update as posted to a webhook."""
    user = {"id": chat_id, "is_bot": False, "first_name": "Asha", "language_code": "en"}
    chat = {"id": chat_id, "type": chat_type, "first_name": "Asha"}
    uid = update_id if update_id is not None else next(_update_ids)
    if callback_data is not None:
        return {"update_id": uid, "callback_query": {
            "id": f"cb{uid}", "from": user, "chat_instance": "1", "data": callback_data,
            "message": {"message_id": 1, "date": int(time.time()), "chat": chat,
                        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Doorstep"}, "text": "…"}}}
    message: dict[str, Any] = {"message_id": uid, "date": int(time.time()), "chat": chat, "from": user}
    if contact_phone is not None:
        message["contact"] = {"phone_number": contact_phone, "first_name": "Asha",
                              "user_id": contact_user_id if contact_user_id is not None else chat_id}
    else:
        message["text"] = text or ""
    return {"update_id": uid, "message": message}
