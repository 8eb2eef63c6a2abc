"""A fake Twilio REST API on loopback, spoken to by the real `twilio` client.

Implements what Doorstep uses: `POST /2010-04-01/Accounts/{sid}/Messages.json`
(create; Basic auth checked; `ContentSid`/`ContentVariables`, `DltTemplateId`
recorded) and `GET …/Messages.json` (list with `To`, `From`, `DateSent>`
filters, for reconciliation); the Content API (`POST`/`GET /v1/Content`,
`POST /v1/Content/{sid}/ApprovalRequests/whatsapp`, `GET …/ApprovalRequests`),
with `approve(name, category=…)` playing WhatsApp's review (approval,
rejection, a category change). Every request is recorded
with its Host header, so tests can prove the client was rewritten to us.

`fail_next(status, code, delay)` scripts the next create calls: a 500, a 429,
a Twilio error code (21610, 21211, 63016), or a slow answer (timeout); `latency`
makes every create answer after a random delay (many sends in flight at once).
`outage(status)` fails every create until `recover()`; `refuse_connections()`
stops the server itself (the client gets "connection refused") and `recover()`
starts it again on the same port. The
fake can also play Twilio's side of the conversation: `inbound(...)` builds a
correctly signed inbound webhook and `status_callback(...)` posts a signed
delivery status to the message's StatusCallback URL.

`LoopbackServer` runs any ASGI app (this fake, the Telegram fake, Doorstep
itself) under a real uvicorn on a free 127.0.0.1 port in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "+14155238886"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """A real uvicorn serving `app` on 127.0.0.1:<free port>, in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", loop="asyncio", timeout_keep_alive=30))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class LoopbackFake:
    """start / stop / url for a fake provider: its `app()` served by a LoopbackServer."""

    server: LoopbackServer | None

    def app(self) -> Any:
        raise NotImplementedError

    def start(self) -> Self:
        self.server = LoopbackServer(self.app()).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url



def max_in_any_second(times: list[float]) -> int:
    """The most of `times` (seconds) within any sliding one-second window (the fakes' rate checks)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most

@dataclass
class Failure:
    status: int
    code: int | None = None
    delay: float = 0.0
    to: str | None = None


@dataclass
class FakeTwilio(LoopbackFake):
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: deque[Failure] = field(default_factory=deque)
    server: LoopbackServer | None = None
    outage_status: int | None = None
    refused: bool = False
    latency: tuple[float, float] | None = None  # every create answers after uniform(lo, hi) seconds
    contents: dict[str, dict[str, Any]] = field(default_factory=dict)  # Content API: sid -> resource
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)  # sid -> its WhatsApp approval
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # media id -> (content type, body)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_media(self, content_type: str, body: bytes) -> str:
        """A customer's attachment as Twilio keeps it: its URL (Basic auth required, like Twilio's)."""
        media_id = "ME" + secrets.token_hex(16)
        self.media[media_id] = (content_type, body)
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages/MM{secrets.token_hex(16)}/Media/{media_id}"

    # ------------------------------------------------------------ scripting

    def fail_next(self, status: int, code: int | None = None, *, delay: float = 0.0, times: int = 1) -> None:
        for _ in range(times):
            self.failures.append(Failure(status, code, delay))

    def outage(self, status: int = 500) -> None:
        """Every create answers `status` until `recover()`."""
        self.outage_status = status

    def refuse_connections(self) -> None:
        """Stop listening: the client's connections are refused until `recover()`."""
        assert self.server is not None
        self.server.stop()
        self.refused = True

    def recover(self) -> None:
        self.outage_status = None
        if self.refused:
            assert self.server is not None
            self.server = LoopbackServer(self.app(), port=self.server.port).start()
            self.refused = False

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["to"].removeprefix("whatsapp:") == number]

    def max_in_any_second(self, sender: str) -> int:
        """The most messages from `sender` (a From number, with or without `whatsapp:`) in any sliding second."""
        with self._lock:
            return max_in_any_second([m["_monotonic"] for m in self.messages
                                      if m["from"].removeprefix("whatsapp:") == sender])

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        with self._lock:
            raise AssertionError(f"expected {count} messages at fake Twilio, got {len(self.messages)}")

    # ------------------------------------------------------------ the app

    def _authorised(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == expected

    async def create_message(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        with self._lock:
            self.requests.append({"method": "POST", "host": request.headers.get("host"), "path": request.url.path,
                                  "form": form})
        if request.path_params["sid"] != self.account_sid or not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if self.outage_status is not None:
            return JSONResponse({"code": None, "message": "fake outage", "status": self.outage_status},
                                status_code=self.outage_status)
        if self.latency is not None:
            # Twilio accepts the message even if the client is gone by the time it answers.
            await asyncio.sleep(random.uniform(*self.latency))
        failure = self.failures.popleft() if self.failures else None
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.status >= 400:
                return JSONResponse({"code": failure.code, "message": f"fake failure {failure.code or failure.status}",
                                     "more_info": "https://www.twilio.com/docs/errors", "status": failure.status},
                                    status_code=failure.status)
        if not form.get("To") or not (form.get("Body") or form.get("ContentSid")):
            return JSONResponse({"code": 21604, "message": "A 'To' and a 'Body' are required", "status": 400},
                                status_code=400)
        refused = self._bad_content_variables(form)
        if refused is not None:
            return JSONResponse({"code": 21656, "message": f"The ContentVariables Parameter is invalid: {refused}",
                                 "status": 400}, status_code=400)
        now = datetime.now(UTC)
        message = {
            "sid": "SM" + secrets.token_hex(16), "account_sid": self.account_sid, "to": form["To"],
            "from": form.get("From", ""), "body": form.get("Body", ""), "status": "queued",
            "content_sid": form.get("ContentSid"), "content_variables": form.get("ContentVariables"),
            "status_callback": form.get("StatusCallback"), "validity_period": form.get("ValidityPeriod"),
            "dlt_template_id": form.get("DltTemplateId"),
            "date_created": format_datetime(now, usegmt=True), "date_sent": format_datetime(now, usegmt=True),
            "direction": "outbound-api", "num_segments": "1", "price": None, "uri": "", "_at": now,
            "_monotonic": time.monotonic(),
        }
        with self._lock:
            self.messages.append(message)
        return JSONResponse({k: v for k, v in message.items() if not k.startswith("_")}, status_code=201)

    def _bad_content_variables(self, form: dict[str, str]) -> str | None:
        """What WhatsApp refuses in a template's variables: not JSON, an empty value, a newline or tab, more
        than four spaces in a row; and a variable the Content template does not have."""
        raw = form.get("ContentVariables")
        if raw is None:
            return None
        try:
            variables = json.loads(raw)
        except ValueError:
            return "not JSON"
        if not isinstance(variables, dict):
            return "not an object"
        for key, value in variables.items():
            if not isinstance(value, str) or not value.strip():
                return f"variable {key} is empty"
            if "\n" in value or "\t" in value or "     " in value:
                return f"variable {key} has a newline, a tab or more than four spaces in a row"
        with self._lock:
            content = self.contents.get(form.get("ContentSid") or "")
        if content is not None:
            declared = set(re.findall(r"\{\{(\d+)\}\}", json.dumps(content["types"])))
            extra = sorted(set(variables) - declared, key=str)
            if extra:
                return f"variable {extra[0]} is not in the template"
        return None

    async def list_messages(self, request: Request) -> Response:
        query = request.query_params
        with self._lock:
            self.requests.append({"method": "GET", "host": request.headers.get("host"), "path": request.url.path,
                                  "query": dict(query)})
            found = list(self.messages)
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if query.get("To"):
            found = [m for m in found if m["to"] == query["To"]]
        if query.get("From"):
            found = [m for m in found if m["from"] == query["From"]]
        if query.get("DateSent>"):
            since = datetime.fromisoformat(query["DateSent>"].replace("Z", "+00:00"))
            found = [m for m in found if m["_at"] >= since]
        items = [{k: v for k, v in m.items() if not k.startswith("_")} for m in reversed(found)]
        return JSONResponse({"messages": items, "end": len(items), "first_page_uri": "", "next_page_uri": None,
                             "page": 0, "page_size": 50, "previous_page_uri": None, "start": 0, "uri": ""})

    # ------------------------------------------------------------ Content API (content.twilio.com/v1)

    def approve(self, name_prefix: str, *, category: str | None = None, status: str = "approved",
                reason: str = "") -> None:
        """WhatsApp's side of an approval: the template named `name_prefix…` gets `status` (and a new
        `category`, as WhatsApp does when it reclassifies a utility template as marketing; a
        `rejection_reason` with a rejection)."""
        with self._lock:
            for sid, content in self.contents.items():
                if content["friendly_name"].startswith(name_prefix) and sid in self.approvals:
                    self.approvals[sid]["status"] = status
                    self.approvals[sid]["rejection_reason"] = reason
                    if category is not None:
                        self.approvals[sid]["category"] = category

    def content_named(self, name_prefix: str) -> dict[str, Any]:
        with self._lock:
            return next(c for c in self.contents.values() if c["friendly_name"].startswith(name_prefix))

    async def create_content(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append({"method": "POST", "host": request.headers.get("host"), "path": request.url.path,
                                  "json": body})
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if not body.get("friendly_name") or not isinstance(body.get("types"), dict) or not body.get("types"):
            return JSONResponse({"code": 20001, "message": "friendly_name and types are required", "status": 400},
                                status_code=400)
        # WhatsApp reviews a template with a sample for every variable, and shows at most 3 quick replies.
        placeholders = set(re.findall(r"\{\{(\d+)\}\}", json.dumps(body["types"])))
        samples = body.get("variables") or {}
        missing = sorted(p for p in placeholders if not str(samples.get(p) or "").strip())
        quick = body["types"].get("twilio/quick-reply") or {}
        if missing or len(quick.get("actions") or []) > 3 or not body.get("language"):
            problem = f"no sample for {{{{{missing[0]}}}}}" if missing else "bad actions or language"
            return JSONResponse({"code": 20001, "message": f"invalid content: {problem}", "status": 400},
                                status_code=400)
        sid = "HX" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        content = {"sid": sid, "account_sid": self.account_sid, "friendly_name": body["friendly_name"],
                   "language": body.get("language"), "variables": body.get("variables") or {},
                   "types": body["types"], "url": f"https://content.twilio.com/v1/Content/{sid}",
                   "date_created": now, "date_updated": now,
                   "links": {"approval_fetch": f"https://content.twilio.com/v1/Content/{sid}/ApprovalRequests"}}
        with self._lock:
            self.contents[sid] = content
        return JSONResponse(content, status_code=201)

    async def list_contents(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        with self._lock:
            items = list(self.contents.values())
        return JSONResponse({"contents": items, "meta": {"page": 0, "page_size": 50, "first_page_url": "",
                                                         "previous_page_url": None, "next_page_url": None,
                                                         "url": "", "key": "contents"}})

    async def request_approval(self, request: Request) -> Response:
        body = await request.json()
        sid = request.path_params["sid"]
        with self._lock:
            self.requests.append({"method": "POST", "host": request.headers.get("host"), "path": request.url.path,
                                  "json": body})
            known = sid in self.contents
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if not known:
            return JSONResponse({"code": 20404, "message": "not found", "status": 404}, status_code=404)
        if body.get("category") not in {"UTILITY", "MARKETING", "AUTHENTICATION"} or not body.get("name"):
            return JSONResponse({"code": 20001, "message": "name and a category are required", "status": 400},
                                status_code=400)
        with self._lock:
            content_type = next(iter(self.contents[sid]["types"]))
        approval = {"name": body["name"], "category": body["category"], "content_type": content_type,
                    "status": "received", "rejection_reason": "", "allow_category_change": True}
        with self._lock:
            self.approvals[sid] = approval
        return JSONResponse(approval, status_code=201)

    async def fetch_approval(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        with self._lock:
            if sid not in self.contents:
                return JSONResponse({"code": 20404, "message": "not found", "status": 404}, status_code=404)
            whatsapp = dict(self.approvals.get(sid) or {"status": "unsubmitted"})
        return JSONResponse({"sid": sid, "account_sid": self.account_sid, "whatsapp": whatsapp,
                             "url": f"https://content.twilio.com/v1/Content/{sid}/ApprovalRequests"})
    async def get_media(self, request: Request) -> Response:
        with self._lock:
            self.requests.append({"method": "GET", "host": request.headers.get("host"), "path": request.url.path})
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        found = self.media.get(request.path_params["media_id"])
        if found is None:
            return JSONResponse({"code": 20404, "message": "not found", "status": 404}, status_code=404)
        return Response(found[1], media_type=found[0])

    def app(self) -> Starlette:
        path = "/2010-04-01/Accounts/{sid}/Messages.json"
        return Starlette(routes=[Route(path, self.create_message, methods=["POST"]),
                                 Route(path, self.list_messages, methods=["GET"]),
                                 Route("/v1/Content", self.create_content, methods=["POST"]),
                                 Route("/v1/Content", self.list_contents, methods=["GET"]),
                                 Route("/v1/Content/{sid}/ApprovalRequests/whatsapp", self.request_approval,
                                       methods=["POST"]),
                                 Route("/v1/Content/{sid}/ApprovalRequests", self.fetch_approval, methods=["GET"]),
                                 Route("/2010-04-01/Accounts/{sid}/Messages/{mid}/Media/{media_id}", self.get_media,
                                       methods=["GET"])])

    # ------------------------------------------------------------ Twilio's side of webhooks

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def inbound(self, public_url: str, *, from_: str, body: str, sid: str | None = None,
                to: str = SMS_FROM, media: tuple[str, ...] = (), profile_name: str = "",
                interactive: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """(form, headers) of a signed inbound webhook as Twilio would send it. `interactive`: a WhatsApp
        tap, as `{"ButtonText", "ButtonPayload"}` (quick reply) or `{"ListId", "ListTitle"}` (list row);
        Body then carries the title the customer saw, as on WhatsApp."""
        whatsapp = from_.startswith("whatsapp:")
        params = {
            "MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": self.account_sid, "From": from_,
            "To": f"whatsapp:{WHATSAPP_FROM}" if whatsapp else to, "Body": body, "NumMedia": str(len(media)),
            "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
        }
        for i, url in enumerate(media):
            params[f"MediaUrl{i}"] = url
            params[f"MediaContentType{i}"] = "image/jpeg"
        if profile_name:
            params["ProfileName"] = profile_name
        if interactive:
            params.update(interactive)
            params["MessageType"] = "button" if "ButtonPayload" in interactive else "interactive"
        url = public_url.rstrip("/") + "/webhooks/twilio"
        return params, {"X-Twilio-Signature": self.sign(url, params)}

    def status_callback(self, message: dict[str, Any], status: str, error_code: str | None = None,
                        *, deliver_to: str | None = None) -> httpx.Response:
        """POST a signed status callback for `message` to its StatusCallback (or `deliver_to`)."""
        callback = message["status_callback"]
        params = {"MessageSid": message["sid"], "MessageStatus": status, "AccountSid": self.account_sid,
                  "To": message["to"], "From": message["from"], "ApiVersion": "2010-04-01"}
        if error_code:
            params["ErrorCode"] = error_code
        headers = {"X-Twilio-Signature": self.sign(callback, params)}
        return httpx.post(deliver_to or callback, data=params, headers=headers, timeout=10)
