"""The SSRF guard let the cloud metadata address through inside IPv6 (NAT64, 6to4) and missed
192.0.0.192; the Chatwoot and agent-webhook URLs were not vetted at all.

Now one guard (bot/core/urlguard.py) vets every operator-set URL, and the senders
refuse before any byte leaves. Loopback fakes stay reachable only with the
explicit DOORSTEP_ALLOW_PRIVATE_URLS setting.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from pydantic import SecretStr

from bot.core.errors import PermanentProviderError
from bot.core.settings import Settings
from bot.core.urlguard import UnsafeURL, address_problem, check_operator_urls, vet_url
from bot.delivery.dispatcher import Claimed
from bot.service import llm_classifier
from integrations.agent_notify import AgentNotifier
from integrations.chatwoot import ChatwootSender
from tests.fakes.chatwoot_server import FakeChatwoot
from tests.fakes.openai_server import FakeOpenAI

METADATA_IN_DISGUISE = [
    "169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::", "::ffff:169.254.169.254",
    "::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:5601:5601", "192.0.0.192", "fd00:ec2::254", "100.100.100.200",
    "fe80::1", "0.0.0.0", "::", "224.0.0.1",
]


@pytest.mark.parametrize("address", METADATA_IN_DISGUISE)
def test_metadata_and_link_local_addresses_are_refused_even_when_private_ones_are_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_problem(ip, allow_private=False)
    assert address_problem(ip, allow_private=True)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeURL):
        vet_url(f"http://{host}/latest/meta-data", setting="LOGISTICS_WEBHOOK_URL", allow_private=True)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.7", "192.168.1.2", "172.16.0.1", "fd12::1",
                                     "::ffff:127.0.0.1", "64:ff9b::a00:7", "2002:a00:7::"])
def test_private_addresses_need_the_explicit_setting(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_problem(ip, allow_private=False)
    assert address_problem(ip, allow_private=True) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::5db8:d822", "2002:5db8:d822::"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "ftp://example.com/", "http://",
                                 "gopher://127.0.0.1:6379/_", "http://example.com:99999/"])
def test_only_web_urls(url: str) -> None:
    with pytest.raises(UnsafeURL):
        vet_url(url, setting="CHATWOOT_URL", allow_private=True)


def test_a_host_name_is_judged_by_every_address_it_resolves_to() -> None:
    # localhost resolves to loopback: refused without the setting, fine with it.
    with pytest.raises(UnsafeURL, match="DOORSTEP_AGENT_WEBHOOK_URL"):
        vet_url("http://localhost:9/hook", setting="DOORSTEP_AGENT_WEBHOOK_URL", allow_private=False)
    assert ipaddress.ip_address(vet_url("http://localhost:9/hook", setting="X", allow_private=True)).is_loopback


def _claimed(payload: dict[str, Any]) -> Claimed:
    return Claimed(row_id=1, kind="agent_notify", channel=None, reclaimed=False, message=None, payload=payload,
                   event_id=None, attempts=1, max_attempts=5)


def test_the_agent_webhook_is_vetted(settings: Settings) -> None:
    hooked = settings.model_copy(update={"agent_webhook_url": "http://[64:ff9b::a9fe:a9fe]/hook?token=s3cret"})
    with pytest.raises(PermanentProviderError) as refused:
        asyncio.run(AgentNotifier(hooked).send(_claimed({"escalation_id": 1, "reason": "human"})))
    assert "DOORSTEP_AGENT_WEBHOOK_URL" in str(refused.value) and "s3cret" not in str(refused.value)


def test_chatwoot_is_vetted_and_loopback_needs_the_setting(settings: Settings) -> None:
    chatwoot = FakeChatwoot(token="token").start()
    try:
        configured = settings.model_copy(update={
            "chatwoot_url": chatwoot.url, "chatwoot_api_token": SecretStr("token"), "chatwoot_inbox_id": 1})
        claimed = _claimed({"op": "customer_message", "link_id": 1, "message_id": 1})
        with pytest.raises(PermanentProviderError, match="CHATWOOT_URL"):
            asyncio.run(ChatwootSender(configured).send(claimed))
        assert chatwoot.requests == [], "nothing reached Chatwoot"
        checks = {c.setting: c for c in check_operator_urls(configured)}
        assert not checks["CHATWOOT_URL"].ok and checks["CHATWOOT_URL"].fatal
        allowed = configured.model_copy(update={"allow_private_urls": True})
        assert all(c.ok for c in check_operator_urls(allowed))
    finally:
        chatwoot.stop()


def test_an_llm_on_loopback_is_called_only_with_the_setting(settings: Settings) -> None:
    from intents import classify
    from intents.types import Context

    text = next((t for t in ("blorf zint", "qwerty uiop", "zorbo flimp kax", "vrumm plax") if classify(t).uncertain), None)
    if text is None:
        pytest.skip("no uncertain candidate for the current model")
    with FakeOpenAI() as fake:
        fake.reply_json({"intent": "wismo", "confidence": 0.8, "entities": []})
        configured = settings.model_copy(update={"openai_api_key": SecretStr("sk-test"), "openai_base_url": fake.base_url,
                                                 "llm_model": "fake-model"})
        assert llm_classifier(configured)(text, Context()).source != "llm"
        assert fake.requests == [], "the LLM base URL on loopback was called without DOORSTEP_ALLOW_PRIVATE_URLS"
        allowed = configured.model_copy(update={"allow_private_urls": True})
        assert llm_classifier(allowed)(text, Context()).source == "llm"
