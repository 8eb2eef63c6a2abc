"""A fake Chatwoot (application API v1) on loopback, built from Chatwoot's documented
request and response shapes: contacts (create, search, contact inboxes),
conversations, messages. Checks the `api_access_token` header like Chatwoot.

`fail_next` makes the next N requests answer 503 (Chatwoot down).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeChatwoot:
    token: str
    account_id: int = 1
    inbox_id: int = 7
    port: int = 0
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        prefix = f"/api/v1/accounts/{self.account_id}"
        if not path.startswith(prefix):
            return 404, {"error": "Resource could not be found"}
        path = path[len(prefix):]
        if method == "POST" and path == "/contacts":
            phone = body.get("phone_number")
            if phone and any(c.get("phone_number") == phone for c in self.contacts.values()):
                return 422, {"message": "Phone number has already been taken", "attributes": ["phone_number"]}
            contact_id = len(self.contacts) + 1
            source_id = str(uuid.uuid4())
            inbox = {"id": int(body.get("inbox_id", 0)), "name": "Doorstep"}
            contact = {"id": contact_id, "name": body.get("name"), "phone_number": phone,
                       "identifier": body.get("identifier"), "contact_inboxes": [{"source_id": source_id, "inbox": inbox}]}
            self.contacts[contact_id] = contact
            return 200, {"payload": {"contact": contact, "contact_inbox": {"inbox": inbox, "source_id": source_id}}}
        if method == "GET" and path == "/contacts/search":
            q = (query.get("q") or [""])[0]
            found = [c for c in self.contacts.values() if q and q in (c.get("phone_number") or "", c.get("identifier") or "")]
            return 200, {"meta": {"count": len(found), "current_page": 1}, "payload": found}
        match = re.fullmatch(r"/contacts/(\d+)/contact_inboxes", path)
        if method == "POST" and match:
            contact = self.contacts.get(int(match.group(1)))
            if contact is None:
                return 404, {"error": "Resource could not be found"}
            source_id = str(uuid.uuid4())
            contact["contact_inboxes"].append({"source_id": source_id, "inbox": {"id": int(body["inbox_id"])}})
            return 200, {"source_id": source_id, "inbox": {"id": int(body["inbox_id"])}}
        if method == "POST" and path == "/conversations":
            contact = self.contacts.get(int(body.get("contact_id", 0)))
            sources = {ci["source_id"] for ci in (contact or {}).get("contact_inboxes", [])}
            if contact is None or body.get("source_id") not in sources:
                return 422, {"message": "Contact inbox not found"}
            conversation_id = 100 + len(self.conversations) + 1
            conversation = {"id": conversation_id, "account_id": self.account_id, "inbox_id": body.get("inbox_id"),
                            "contact_id": contact["id"], "status": body.get("status", "open"),
                            "custom_attributes": body.get("custom_attributes", {})}
            self.conversations[conversation_id] = conversation
            return 200, conversation
        match = re.fullmatch(r"/conversations/(\d+)/messages", path)
        if method == "POST" and match:
            conversation_id = int(match.group(1))
            if conversation_id not in self.conversations:
                return 404, {"error": "Resource could not be found"}
            message = {"id": 1000 + len(self.messages) + 1, "conversation_id": conversation_id,
                       "content": body.get("content"), "message_type": 1 if body.get("message_type") == "outgoing" else 0,
                       "private": bool(body.get("private")), "content_type": "text"}
            self.messages.append(message)
            return 200, message
        return 404, {"error": "Resource could not be found"}

    def start(self) -> FakeChatwoot:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((method, parts.path))
                    if fake.fail_next > 0:
                        fake.fail_next -= 1
                        status, payload = 503, {"error": "unavailable"}
                    elif self.headers.get("api_access_token") != fake.token:
                        status, payload = 401, {"errors": ["You need to sign in or sign up before continuing."]}
                    else:
                        body = json.loads(raw) if raw else {}
                        status, payload = fake._route(method, parts.path, parse_qs(parts.query), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
