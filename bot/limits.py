"""Request size and time limits, enforced before any route reads a body (a pure ASGI middleware).

Unauthenticated 100 MB POSTs used to be read whole before the signature or key
was checked: eight of them took `serve` from 252 MB to 1.2 GB. Here a body
announced larger than its route's limit is refused with 413 before a byte is
read; a body that streams past the limit (chunked, or lying about its length)
is cut off with 413; a body that trickles in for longer than BODY_TIMEOUT is
answered 408, so a slow client cannot hold a worker. Limits: the route's
prefix in ROUTE_LIMITS, else DOORSTEP_MAX_BODY_BYTES.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1_000_000
BODY_TIMEOUT_SECONDS = 30.0
# Rasa action calls carry the whole tracker (its history): they may be larger.
ROUTE_LIMITS = {"/rasa/": 2_000_000}


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it as is (it turns other errors into 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


class BodyTooSlow(HTTPException):
    def __init__(self) -> None:
        super().__init__(408, "request body not received in time")


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 body_timeout: float = BODY_TIMEOUT_SECONDS) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in ROUTE_LIMITS.items() if path.startswith(prefix)), self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, 413, f"request body too large (limit {limit} bytes)", close=True)
            return
        received = 0
        deadline = time.monotonic() + self.body_timeout
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except TimeoutError:
                raise BodyTooSlow() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:  # read outside a route's error handling
            if not started:
                await _refuse(send, exc.status_code, str(exc.detail), close=True)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, status: int, detail: str, *, close: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
