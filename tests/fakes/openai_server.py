"""A fake OpenAI-compatible chat-completions server on loopback, for testing the LLM fallback.

A real HTTP server (http.server in a thread, on a free 127.0.0.1 port): the real
`openai` client is pointed at it with `base_url`. Tests script its answers and
read back the requests it received. It never reaches the network.

    with FakeOpenAI() as fake:
        fake.reply_json({"intent": "wismo", "confidence": 0.8, "entities": []})
        ... base_url=fake.base_url ...
        fake.requests[0]["messages"]
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    status: int = 200
    content: str | None = None  # the assistant message's content
    delay: float = 0.0
    raw_body: str | None = None  # overrides the whole response body


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[Scripted] = deque()
        self.default = Scripted(
            content=json.dumps({"intent": "out_of_scope", "confidence": 0.5, "entities": []})
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    # ------------------------------------------------------------ scripting
    def reply_json(self, payload: dict[str, Any], *, delay: float = 0.0) -> None:
        self._script.append(Scripted(content=json.dumps(payload), delay=delay))

    def reply_text(self, content: str) -> None:
        self._script.append(Scripted(content=content))

    def reply_status(self, status: int) -> None:
        self._script.append(
            Scripted(
                status=status, raw_body=json.dumps({"error": {"message": "boom", "type": "server_error"}})
            )
        )

    def reply_slow(self, seconds: float) -> None:
        self._script.append(
            Scripted(
                content=json.dumps({"intent": "wismo", "confidence": 0.9, "entities": []}), delay=seconds
            )
        )

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Scripted:
        return self._script.popleft() if self._script else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "not found"}}))
                    return
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                scripted = fake._next()
                if scripted.delay:
                    time.sleep(scripted.delay)
                if scripted.raw_body is not None:
                    self._send(scripted.status, scripted.raw_body)
                    return
                completion = {
                    "id": f"chatcmpl-fake-{len(fake.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": scripted.content},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                self._send(scripted.status, json.dumps(completion))

            def _send(self, status: int, payload: str) -> None:
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler
