"""Hostile input gets a clear 4xx and changes nothing: javascript: links, JSON nested thousands deep,
a cursor of Unicode digits. Each of these answered 500 or was accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bot.app import create_app
from bot.core.settings import Settings
from bot.core.urls import is_web_url, safe_link
from bot.service import Service
from integrations.carrier_webhooks import doorstep_signature
from tests.support.factories import order_payload

DEEP = ("[" * 50_000 + "]" * 50_000).encode()
CARRIER_SECRET = "carrier-test-hmac-secret"


@pytest.fixture
def service(make_service: Callable[..., Service], settings: Settings) -> Service:
    return make_service(settings.model_copy(update={"carrier_webhook_secret": SecretStr(CARRIER_SECRET),
                                                     "chatwoot_webhook_token": SecretStr("hook-token")}))


@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(create_app(service=service))


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", "data:text/html,<b>x</b>",
                                 "vbscript:msgbox", "//evil.example.com/x", "http://", " javascript:alert(1)"])
def test_a_tracking_link_must_be_a_web_link(client: TestClient, auth: dict[str, str], url: str) -> None:
    response = client.post("/api/orders", json=order_payload(tracking_url=url), headers=auth)
    assert response.status_code == 422, response.text
    assert any(d["loc"][-1] == "tracking_url" and "http" in d["msg"] for d in response.json()["detail"])
    assert client.get("/api/orders/A1001", headers=auth).status_code == 404  # nothing was saved


def test_a_real_tracking_link_is_kept(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/api/orders", json=order_payload(tracking_url="https://track.example.com/DL1?x=1"),
                           headers=auth)
    assert response.status_code in (200, 201) and response.json()["tracking_url"] == "https://track.example.com/DL1?x=1"


def test_links_in_the_inbox_are_only_web_links() -> None:
    assert safe_link("https://api.twilio.com/Media/ME1") == "https://api.twilio.com/Media/ME1"
    assert safe_link("javascript:alert(1)") == "" and safe_link("data:image/png;base64,AAAA") == ""
    assert not is_web_url("https://exa\nmple.com") and not is_web_url("http:\\\\evil")


def _carrier_headers(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-doorstep-signature": doorstep_signature(CARRIER_SECRET, body)}


@pytest.mark.parametrize("endpoint", ["rasa", "chatwoot", "carrier", "orders"])
def test_json_nested_thousands_deep_is_a_400(client: TestClient, auth: dict[str, str], endpoint: str) -> None:
    requests: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
        "rasa": ("/rasa/webhook", {"token": "test-api-key-0123456789abcdef"}, {"content-type": "application/json"}),
        "chatwoot": ("/webhooks/chatwoot", {"token": "hook-token"}, {"content-type": "application/json"}),
        "carrier": ("/webhooks/carrier", {}, _carrier_headers(DEEP)),
        "orders": ("/api/orders", {}, {**auth, "content-type": "application/json"}),
    }
    path, params, headers = requests[endpoint]
    response = client.post(path, params=params, content=DEEP, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body.get("detail") or body.get("error"), str)  # a reason, in the endpoint's error format


@pytest.mark.parametrize("cursor", ["%C2%B3", "%D9%A3", "-1", "1e3", "12345678901234567890"])
def test_a_cursor_that_is_not_ascii_digits_is_a_400(client: TestClient, auth: dict[str, str], cursor: str) -> None:
    response = client.get(f"/api/events?after={cursor}", headers=auth)
    assert response.status_code == 400 and "after" in response.json()["detail"]
