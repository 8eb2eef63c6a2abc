"""Regression: a carrier repeating a status with a new time (`shipped` twice)
sent the same message again and used up the per-order cap, and the cap then
dropped the `delivered` or `failed_attempt` message the customer needed.

A status repeat says nothing new and sends nothing (a `delayed` with a new
ETA is news and is sent); caps apply only to optional messages, never to
transactional ones. Both entry points: the orders API and the carrier webhook.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from bot.core.settings import Settings
from integrations.carrier_webhooks import aftership_signature, doorstep_signature
from tests.journeys.conftest import Kit, ist, make_kit

CARRIER_SECRET = "carrier-repeat-test-secret"
AFTERSHIP_SECRET = "aftership-repeat-test-secret"


def _kit(settings: Settings, auth: dict[str, str]) -> Kit:
    return make_kit(settings.model_copy(update={"carrier_webhook_secret": SecretStr(CARRIER_SECRET),
                                                "aftership_webhook_secret": SecretStr(AFTERSHIP_SECRET)}),
                    auth, ist(23, 10))


def _step(kit: Kit, order_id: str, type_: str, **body: Any) -> None:
    kit.clock.advance(timedelta(minutes=40))
    kit.event(order_id, type_, **body)
    kit.run_until(kit.clock())


def _sent_journeys(kit: Kit, order_id: str) -> list[str]:
    return [m["journey"] for m in kit.log(order_id) if m["direction"] == "out" and m["status"] == "sent"]


def test_a_repeated_status_sends_nothing_and_the_cap_never_drops_news(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        kit.post_order()
        kit.run_until(kit.clock())
        _step(kit, "A1001", "shipped")
        _step(kit, "A1001", "shipped")  # the carrier scanned the parcel again
        _step(kit, "A1001", "out_for_delivery")
        _step(kit, "A1001", "out_for_delivery")
        _step(kit, "A1001", "failed_attempt")
        _step(kit, "A1001", "out_for_delivery")  # the second attempt, the same day
        _step(kit, "A1001", "delivered")
        assert _sent_journeys(kit, "A1001") == ["order_confirmed", "shipped", "out_for_delivery", "failed_attempt",
                                                "out_for_delivery", "delivered"]
        assert [m for m in kit.log("A1001") if m["status"] == "cancelled"] == []
        assert len(kit.recorder.sent) == 6
    kit.service.db.dispose()


def test_delayed_again_is_news_only_with_a_new_eta(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        kit.post_order()
        _step(kit, "A1001", "shipped")
        _step(kit, "A1001", "delayed", eta="2026-11-27")
        _step(kit, "A1001", "delayed", eta="2026-11-27")  # the same delay reported again
        _step(kit, "A1001", "delayed")  # no ETA: nothing new either
        _step(kit, "A1001", "delayed", eta="2026-11-28")  # a new ETA: the customer must hear it
        _step(kit, "A1001", "delayed", eta="2026-11-29")
        delayed = [s.text for s in kit.recorder.sent if s.kind == "journey.delayed"]
        assert len(delayed) == 3
        assert "27" in delayed[0] and "28" in delayed[1] and "29" in delayed[2]
        assert [m for m in kit.log("A1001") if m["status"] == "cancelled"] == []
    kit.service.db.dispose()


def test_repeats_through_the_carrier_webhook_send_nothing(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        kit.post_order()
        for minutes in (0, 30, 60):  # Doorstep's own format: the same status at three scan times
            kit.clock.advance(timedelta(minutes=30))
            body = json.dumps({"tracking_number": "DL123", "type": "shipped",
                               "at": (ist(23, 10) + timedelta(minutes=minutes)).isoformat()}).encode()
            response = kit.client.post("/webhooks/carrier", content=body, headers={
                "content-type": "application/json", "x-doorstep-signature": doorstep_signature(CARRIER_SECRET, body)})
            assert response.status_code == 201, response.text
            kit.run_until(kit.clock())
        for minutes in (0, 20):  # AfterShip: the same exception with the same expected delivery, two checkpoints
            kit.clock.advance(timedelta(minutes=30))
            response = _post_aftership(kit, "Exception", kit.clock() - timedelta(minutes=minutes), "2026-11-28")
            assert response.status_code in (200, 201), response.text
            kit.run_until(kit.clock())
        assert [s.kind for s in kit.recorder.sent] == ["journey.order_confirmed", "journey.shipped", "journey.delayed"]
    kit.service.db.dispose()


def test_optional_messages_are_still_capped(settings: Settings, auth: dict[str, str]) -> None:
    kit = _kit(settings, auth)
    with kit.client:
        kit.post_order(payment_method="cod")  # 1: the COD question; a reminder is due at 12:00
        kit.run_until(kit.clock())
        _step(kit, "A1001", "shipped")  # 2
        _step(kit, "A1001", "delayed", eta="2026-11-27")  # 3
        _step(kit, "A1001", "delayed", eta="2026-11-28")  # 4
        kit.run_until(ist(23, 12, 30))
        reminder = next(m for m in kit.log("A1001") if m["journey"] == "cod_reminder")
        assert reminder["status"] == "cancelled" and "frequency cap" in reminder["error"]
        assert "journey.cod_reminder" not in [s.kind for s in kit.recorder.sent]
    kit.service.db.dispose()


def _post_aftership(kit: Kit, tag: str, when: datetime, expected: str) -> Any:
    payload = {"event": "tracking_update", "ts": int(when.timestamp()), "msg": {
        "tracking_number": "DL123", "tag": tag, "slug": "delhivery", "expected_delivery": expected,
        "checkpoints": [{"tag": tag, "checkpoint_time": when.isoformat(timespec="seconds"), "message": "Held"}]}}
    body = json.dumps(payload).encode()
    return kit.client.post("/webhooks/carrier", content=body, headers={
        "content-type": "application/json", "aftership-hmac-sha256": aftership_signature(AFTERSHIP_SECRET, body)})
