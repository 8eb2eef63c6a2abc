"""The contact policy, proved with the time-travel clock on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from bot.core.channels import InboundMessage
from bot.core.models import Customer, Outbox
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit


def _texts(kit: Kit) -> list[str]:
    return [s.text for s in kit.recorder.sent]


def test_order_and_shipment_events_become_messages_in_order(kit: Kit) -> None:
    kit.post_order()
    kit.clock.advance(timedelta(hours=1))
    kit.event("A1001", "shipped")
    kit.run_until(kit.clock() + timedelta(minutes=1))
    texts = _texts(kit)
    assert len(texts) == 2
    assert "thanks for your order A1001" in texts[0]
    assert "A1001 has shipped with Delhivery" in texts[1] and "https://track.example.com/DL123" in texts[1]
    assert [m["journey"] for m in kit.log("A1001")] == ["order_confirmed", "shipped"]
    assert {m["status"] for m in kit.log("A1001")} == {"sent"}


def test_quiet_hours_schedule_for_the_next_allowed_time_never_drop(kit: Kit) -> None:
    kit.post_order()
    kit.run_until(kit.clock())
    kit.clock.set(ist(23, 22, 30))
    kit.event("A1001", "shipped")
    entry = kit.log("A1001")[-1]
    assert entry["journey"] == "shipped" and entry["status"] == "scheduled"
    assert entry["due_at"].startswith(ist(24, 8).isoformat()[:16])
    kit.run_until(ist(24, 7, 59))
    assert len(kit.recorder.sent) == 1  # only the order confirmation, sent at 10:00
    kit.run_until(ist(24, 8, 15))
    assert len(kit.recorder.sent) == 2
    assert kit.recorder.sent[1].at.astimezone(ist(24, 8).tzinfo) >= ist(24, 8)
    assert "has shipped" in kit.recorder.sent[1].text
    assert kit.log("A1001")[-1]["status"] == "sent"


def test_quiet_hours_follow_the_customers_own_timezone(kit: Kit) -> None:
    kit.post_order()
    with kit.service.db.session() as session:
        customer = session.exec(select(Customer)).one()
        customer.timezone = "Europe/Madrid"
        session.add(customer)
    kit.clock.set(ist(23, 22, 30))  # 18:00 in Madrid: not quiet there
    kit.event("A1001", "shipped")
    assert kit.log("A1001")[-1]["status"] == "queued"


def test_quiet_hours_can_be_turned_off(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings.model_copy(update={"quiet_hours": ""}), auth, ist(23, 23, 30))
    with kit.client:
        kit.post_order()
        assert kit.log("A1001")[0]["status"] == "queued"


def test_a_reply_to_a_customer_who_just_wrote_is_never_held(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "shipped")
    kit.run_until(kit.clock())
    kit.clock.set(ist(23, 23, 15))
    # received_at: the gateway's own receive step stamps the wall clock, not the injected one.
    handled = kit.service.handle_inbound(InboundMessage(channel="sms", text="where is my order", phone="+919812345678",
                                                        provider_message_id=f"SM{uuid.uuid4().hex}",
                                                        received_at=kit.clock()))
    assert len(handled.replies) == 1
    kit.run_until(kit.clock())
    assert kit.recorder.sent[-1].at == ist(23, 23, 15)
    assert "A1001" in kit.recorder.sent[-1].text
    # ... and a proactive message right after their message is not held either: they are awake.
    kit.clock.advance(timedelta(minutes=5))
    kit.event("A1001", "out_for_delivery")
    assert kit.log("A1001")[-1]["status"] == "queued"


def test_the_same_event_twice_gives_one_message(kit: Kit) -> None:
    kit.post_order()
    kit.post_order()  # the shop re-sends the order: an update, no second confirmation
    kit.event("A1001", "confirmed")  # confirmed after creation: the same confirmation, not another
    at = kit.clock().isoformat()
    for _ in range(2):
        kit.client.post("/api/orders/A1001/events", json={"type": "shipped", "at": at}, headers=kit.auth)
    kit.run_until(kit.clock())
    assert [m["journey"] for m in kit.log("A1001")] == ["order_confirmed", "shipped"]
    assert len(kit.recorder.sent) == 2


def test_frequency_cap_per_order_per_day_never_drops_news(kit: Kit) -> None:
    """The per-order cap counts optional messages only: every delay with a new ETA is news and is sent."""
    kit.post_order()  # 1
    kit.event("A1001", "shipped")  # 2
    kit.run_until(kit.clock())
    for hours in (1, 2, 3):  # 3, 4, 5: transactional, never capped
        kit.clock.advance(timedelta(hours=1))
        kit.event("A1001", "delayed", eta="2026-11-2" + str(6 + hours))
        kit.run_until(kit.clock())
    log = kit.log("A1001")
    assert [m["status"] for m in log].count("sent") == 5
    assert not [m for m in log if m["status"] == "cancelled"]
    assert len(kit.recorder.sent) == 5


def test_marketing_cap_per_customer_per_week(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))
    with kit.client:
        mug = [{"sku": "MUG", "name": "Coffee beans", "qty": 1, "price": "350.00", "consumable_days": 2}]
        kit.post_order(order_id="K1", items=mug)
        kit.post_order(order_id="K2", items=[{**mug[0], "sku": "TEA", "name": "Tea"}])
        kit.event("K1", "delivered")
        kit.event("K2", "delivered")
        kit.run_until(ist(30, 12), step=timedelta(hours=1))
        marketing = [s for s in kit.recorder.sent if s.kind in {"journey.reorder", "journey.feedback"}]
        assert len(marketing) == 1  # one reorder nudge; the second and both NPS surveys are capped
        logs = kit.log("K1") + kit.log("K2")
        capped = [m for m in logs if m["status"] == "cancelled"]
        assert capped and all("marketing" in m["error"] for m in capped)


def test_transactional_messages_go_before_marketing(kit: Kit) -> None:
    kit.service.runtime.shop_config["contact_policy"]["caps"]["marketing_per_customer_per_week"] = 5
    kit.post_order(order_id="M1", items=[{"sku": "B", "name": "Beans", "qty": 1, "price": "1.00", "consumable_days": 1}])
    kit.event("M1", "delivered")
    kit.run_until(kit.clock())
    kit.post_order(order_id="M2", phone="+919812345678")
    kit.clock.set(ist(24, 7))  # both the reorder nudge (due 10:00 the day before + 1 day) and M2's news wait for 08:00
    kit.event("M2", "shipped")
    kit.clock.set(ist(24, 10, 30))
    kit.recorder.sent.clear()
    kit.run_until(kit.clock())
    kinds = [s.kind for s in kit.recorder.sent]
    assert kinds.index("journey.shipped") < kinds.index("journey.reorder")


def test_delivered_cancels_a_pending_out_for_delivery_and_nothing_late_follows(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "shipped")
    kit.run_until(kit.clock())
    kit.clock.set(ist(23, 21, 30))
    kit.event("A1001", "out_for_delivery")  # quiet hours: scheduled for 08:00
    assert kit.log("A1001")[-1]["status"] == "scheduled"
    kit.clock.set(ist(24, 7))
    kit.event("A1001", "delivered")
    kit.event("A1001", "delayed", expect=409)  # the API refuses it; and no message is written for it
    kit.run_until(ist(24, 9))
    log = kit.log("A1001")
    ofd = next(m for m in log if m["journey"] == "out_for_delivery")
    assert ofd["status"] == "cancelled" and "superseded by delivered" in ofd["error"]
    assert [m["journey"] for m in log if m["status"] == "sent"] == ["order_confirmed", "shipped", "delivered"]
    assert not any(m["journey"] == "delayed" for m in log)
    with kit.service.db.session() as session:
        row = session.exec(select(Outbox).where(Outbox.status == "cancelled")).one()
        assert row.message_id == ofd["id"]


def test_opted_out_customer_gets_nothing_proactive(kit: Kit) -> None:
    kit.post_order()
    kit.run_until(kit.clock())
    with kit.service.db.session() as session:
        customer = session.exec(select(Customer)).one()
        customer.opted_out_channels = ["sms"]
        session.add(customer)
    kit.event("A1001", "shipped")
    kit.event("A1001", "delivered")
    kit.run_until(kit.clock() + timedelta(days=5), step=timedelta(hours=2))
    assert len(kit.recorder.sent) == 1  # the confirmation sent before they opted out
    assert [m["journey"] for m in kit.log("A1001")] == ["order_confirmed"]


def test_scheduled_messages_survive_a_restart(settings: Settings, auth: dict[str, str]) -> None:
    first = make_kit(settings, auth, ist(23, 22))
    with first.client:
        first.post_order()
        first.event("A1001", "shipped")
    first.service.db.dispose()  # the process dies with two messages scheduled for 08:00
    second = make_kit(settings, auth, ist(24, 6))
    with second.client:
        assert [m["status"] for m in second.log("A1001")] == ["scheduled", "scheduled"]
        second.run_until(ist(24, 8, 30))
        assert len(second.recorder.sent) == 2
        assert [m["status"] for m in second.log("A1001")] == ["sent", "sent"]
        second.run_until(ist(24, 12))
        assert len(second.recorder.sent) == 2  # and never again
    second.service.db.dispose()
