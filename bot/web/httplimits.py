"""Limits every HTTP request meets before any route reads it: body size and send time.

`BodyLimitMiddleware` is pure ASGI and sits in front of every route, so no body
is read whole before authentication: a declared `Content-Length` over the
limit is answered 413 at once, unread; a chunked or lying body is counted as
it streams and refused the moment it passes the limit, so at most one limit's
worth is ever held. A router module's `MAX_BODY_BYTES` is the limit on its
paths (Twilio's forms, Rasa's trackers); every other path has
`DOORSTEP_MAX_BODY_BYTES`.

`guarded_protocol` is uvicorn's httptools protocol with a deadline for each
request's headers and body (`DOORSTEP_REQUEST_TIMEOUT_SECONDS`) and a bound on
the header block (`MAX_HEADER_BYTES`): uvicorn only times out idle keep-alive
connections, so a client sending a header byte every few seconds (slow loris)
would otherwise hold its connection forever, and llhttp bounds no header size.

This module never reads a body it refuses, and never logs request contents.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Header block limit (h11's default, which `serve` used before httptools), stated so `serve` documents it.
MAX_HEADER_BYTES = 16 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes its limit; FastAPI re-raises HTTPExceptions
    from body parsing as they are, so the client gets this 413 rather than a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes", headers={"connection": "close"})


def _problem(status: int, detail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"detail": detail}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}  # the unread rest of the body is never read: close
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """Refuse request bodies over the limit for their path (413), before and while they are read."""

    def __init__(self, app: ASGIApp, *, default_limit: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.path_limits = dict(path_limits or {})

    def limit_for(self, path: str) -> int:
        # A route's own limit was chosen for what its provider sends; every other path gets the default.
        return self.path_limits.get(path.rstrip("/") or "/", self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = [value for name, value in scope["headers"] if name == b"content-length"]
        if declared:
            if len(declared) > 1 or not declared[0].strip().isdigit():
                await self._answer(send, 400, "invalid Content-Length")
                return
            if int(declared[0]) > limit:
                await self._answer(send, 413, f"request body larger than {limit} bytes")
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:  # raised where no route or handler turned it into the 413 already
            if not started:
                await self._answer(send, 413, str(exc.detail))

    @staticmethod
    async def _answer(send: Send, status: int, detail: str) -> None:
        start, body = _problem(status, detail)
        await send(start)
        await send(body)


def guarded_protocol(request_timeout: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol (llhttp, C: about a third less CPU per request than h11 here),
    closing a connection whose request (headers and body) takes longer than `request_timeout`
    seconds to arrive, and refusing (400, closed) a header block longer than `max_header_bytes`
    (llhttp itself sets no bound)."""

    class GuardedProtocol(HttpToolsProtocol):
        _request_deadline: asyncio.TimerHandle | None = None
        _in_request = True  # from a request's first byte to its last (the next one starts at once)
        _headers_done = False
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends anything is a slow request too

        def data_received(self, data: bytes) -> None:
            self._in_request = True
            super().data_received(data)
            if not self._headers_done:  # still in the header block after this chunk: count it
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes and not self.transport.is_closing():
                    self.send_400_response("Request header block too large.")
                    return
            if self._in_request:
                self._arm()  # a request is under way: from its first byte, not from each chunk
            else:
                self._disarm()

        def on_headers_complete(self) -> None:
            self._headers_done = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_request, self._headers_done, self._header_bytes = False, False, 0
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._disarm()  # the next request starts with its first byte; until then keep-alive rules
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._request_deadline is None:
                self._request_deadline = self.loop.call_later(request_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._request_deadline is not None:
                self._request_deadline.cancel()
                self._request_deadline = None

        def _too_slow(self) -> None:
            self._request_deadline = None
            if self._in_request and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol
