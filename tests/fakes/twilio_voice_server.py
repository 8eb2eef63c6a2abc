"""A fake Twilio Voice on loopback: the fake Twilio (Messages) plus `Calls.json`, and Twilio's side of a
call — the signed webhooks it posts to the app (the answered call with `AnsweredBy`, `<Gather>` results
with `Digits` or `SpeechResult`, status callbacks with `CallStatus`), each returning the app's answer.

Webhooks go through an HTTP client of the test's choosing (a FastAPI TestClient), at the path and query of
the URL Twilio would call; the signature is computed over the public URL, as Twilio does.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.twilio_server import SMS_FROM, FakeTwilio


@dataclass
class FakeTwilioVoice(FakeTwilio):
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def create_call(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).multi_items()}
        events = [str(v) for k, v in (await request.form()).multi_items() if k == "StatusCallbackEvent"]
        with self._lock:
            self.requests.append({"method": "POST", "host": request.headers.get("host"), "path": request.url.path,
                                  "form": form})
        if request.path_params["sid"] != self.account_sid or not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if not form.get("To") or not form.get("From") or not (form.get("Url") or form.get("Twiml")):
            return JSONResponse({"code": 21205, "message": "To, From and Url (or Twiml) are required",
                                 "status": 400}, status_code=400)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        call = {"sid": "CA" + secrets.token_hex(16), "account_sid": self.account_sid, "to": form["To"],
                "from": form["From"], "status": "queued", "direction": "outbound-api", "date_created": now,
                "url": form.get("Url"), "status_callback": form.get("StatusCallback"),
                "status_callback_event": events, "machine_detection": form.get("MachineDetection"),
                "timeout": form.get("Timeout"), "uri": ""}
        with self._lock:
            self.calls.append(call)
        return JSONResponse({k: v for k, v in call.items() if k not in {"url", "status_callback_event",
                                                                           "machine_detection", "timeout"}},
                            status_code=201)

    def app(self) -> Starlette:
        app = super().app()
        app.router.routes.append(Route("/2010-04-01/Accounts/{sid}/Calls.json", self.create_call, methods=["POST"]))
        return app

    # ------------------------------------------------------------ Twilio's side of a call

    def post(self, client: httpx.Client, url: str, params: dict[str, str]) -> httpx.Response:
        """POST a webhook signed over `url` (the public URL) to the same path and query on `client`."""
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        return client.post(target, data=params, headers={"X-Twilio-Signature": self.sign(url, params)})

    def _call_params(self, call: dict[str, Any], status: str) -> dict[str, str]:
        return {"CallSid": call["sid"], "AccountSid": self.account_sid, "From": call["from"], "To": call["to"],
                "CallStatus": status, "Direction": call["direction"], "ApiVersion": "2010-04-01"}

    def answer(self, client: httpx.Client, call: dict[str, Any], answered_by: str = "human") -> httpx.Response:
        """The callee picked up (or a machine did): Twilio fetches the call's Url for its TwiML."""
        return self.post(client, call["url"], {**self._call_params(call, "in-progress"), "AnsweredBy": answered_by})

    def gather(self, client: httpx.Client, call: dict[str, Any], twiml: str, *, digits: str | None = None,
               speech: str | None = None) -> httpx.Response:
        """The caller pressed `digits` or said `speech` during the TwiML's <Gather>: Twilio posts its action."""
        action = gather_of(twiml).get("action")
        assert action, "the TwiML has no <Gather action>"
        params = self._call_params(call, "in-progress")
        if digits is not None:
            params["Digits"] = digits
        if speech is not None:
            params.update(SpeechResult=speech, Confidence="0.92")
        return self.post(client, action, params)

    def status(self, client: httpx.Client, call: dict[str, Any], status: str, *, answered_by: str | None = None,
               duration: int = 0) -> httpx.Response:
        params = {**self._call_params(call, status), "CallDuration": str(duration)}
        if answered_by:
            params["AnsweredBy"] = answered_by
        return self.post(client, call["status_callback"], params)

    def incoming(self, client: httpx.Client, public_url: str, *, from_: str, to: str = SMS_FROM) -> tuple[dict[str, Any], httpx.Response]:
        """A call to the shop's number: Twilio posts it to the number's voice webhook."""
        call = {"sid": "CA" + secrets.token_hex(16), "from": from_, "to": to, "direction": "inbound"}
        return call, self.post(client, public_url.rstrip("/") + "/webhooks/twilio/voice",
                               self._call_params(call, "ringing"))


def parse(twiml: str) -> ET.Element:
    root = ET.fromstring(twiml)
    assert root.tag == "Response", twiml
    return root


def gather_of(twiml: str) -> dict[str, str]:
    found = parse(twiml).find("Gather")
    return dict(found.attrib) if found is not None else {}


def spoken(twiml: str) -> list[tuple[str, str]]:
    """Every <Say> in the TwiML, in order: (text, language)."""
    return [(say.text or "", say.get("language", "")) for say in parse(twiml).iter("Say")]
