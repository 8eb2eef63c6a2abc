"""Holdout groups: assigned once at order creation, shown on the order, and withholding only that
journey's proactive messages (never replies, never the opt-out confirmation). SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

from bot.core.channels import InboundMessage
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit


def _orders(kit: Kit, count: int) -> dict[str, dict[str, object]]:
    """`count` orders of different customers; their API view, by order id."""
    return {f"H{i:03d}": kit.post_order(order_id=f"H{i:03d}", phone=f"+9198123{i:05d}") for i in range(count)}


def _journeys_sent(kit: Kit, order_id: str) -> list[str]:
    """The journeys that wrote a message about the order, whatever became of it (the provider's rate limit,
    on the wall clock, lets only some go out while the test's clock stands still)."""
    return [m["journey"] for m in kit.log(order_id) if m["journey"]]


def test_global_holdout_gets_no_proactive_message_and_its_group_is_on_the_order(settings: Settings,
                                                                                 auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10), holdout={"share": 0.5, "salt": "test"})
    with kit.client:
        orders = _orders(kit, 30)
        for order_id in orders:
            kit.event(order_id, "shipped")
        kit.run_until(kit.clock() + timedelta(minutes=5))
        groups = {oid: view["holdout"]["group"] for oid, view in orders.items()}  # type: ignore[index]
        assert set(groups.values()) == {"treatment", "holdout"}
        for order_id, group in groups.items():
            again = kit.client.get(f"/api/orders/{order_id}", headers=kit.auth).json()
            assert again["holdout"] == {"group": group, "journeys": {}}  # fixed for the order's life
            expected = [] if group == "holdout" else ["order_confirmed", "shipped"]
            assert _journeys_sent(kit, order_id) == expected, order_id
        # Re-sending the order (an update) never re-draws its group.
        first = next(iter(orders))
        assert kit.post_order(order_id=first, phone="+919812300000")["holdout"]["group"] == groups[first]
    kit.service.db.dispose()


def test_a_held_out_customer_still_gets_answers_and_the_opt_out_confirmation(settings: Settings,
                                                                              auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10), holdout={"share": 0.5, "salt": "test"})
    with kit.client:
        orders = _orders(kit, 12)
        held = next(oid for oid, view in orders.items() if view["holdout"]["group"] == "holdout")  # type: ignore[index]
        phone = str(orders[held]["customer"]["phone"])  # type: ignore[index]

        def say(text: str) -> list[str]:
            handled = kit.service.handle_inbound(InboundMessage(channel="sms", text=text, phone=phone,
                                                                provider_message_id=f"SM{uuid.uuid4().hex}",
                                                                received_at=kit.clock()))
            return [m.text for m in handled.replies]

        answer = say("where is my order")
        assert len(answer) == 1 and held in answer[0]
        stop = say("STOP")
        assert len(stop) == 1 and "unsubscribed" in stop[0]
        assert [m["journey"] for m in kit.log(held) if m["journey"]] == []  # nothing proactive, but both replies
    kit.service.db.dispose()


def test_a_journey_holdout_withholds_that_journey_only(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10), holdout={"journeys": {"shipped": 0.5}, "salt": "test"})
    with kit.client:
        orders = _orders(kit, 20)
        for order_id in orders:
            kit.event(order_id, "shipped")
        kit.clock.advance(timedelta(hours=1))
        for order_id in orders:
            kit.event(order_id, "out_for_delivery")
        kit.run_until(kit.clock() + timedelta(minutes=5))
        arms = {oid: view["holdout"] for oid, view in orders.items()}
        assert {a["group"] for a in arms.values()} == {"treatment"}  # type: ignore[index]
        assert {a["journeys"]["shipped"] for a in arms.values()} == {"treatment", "holdout"}  # type: ignore[index]
        for order_id, arm in arms.items():
            held = arm["journeys"]["shipped"] == "holdout"  # type: ignore[index]
            expected = ["order_confirmed", "out_for_delivery"] if held else ["order_confirmed", "shipped",
                                                                               "out_for_delivery"]
            assert _journeys_sent(kit, order_id) == expected, order_id
    kit.service.db.dispose()


def test_no_holdout_configured_means_no_experiment(kit: Kit) -> None:
    view = kit.post_order()
    assert view["holdout"] == {"group": None, "journeys": {}}
    kit.run_until(kit.clock())
    assert _journeys_sent(kit, "A1001") == ["order_confirmed"]
