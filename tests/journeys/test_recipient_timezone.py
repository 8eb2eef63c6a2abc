"""Quiet hours are the recipient's: their own time zone when known, else the zone
of their phone number, else DOORSTEP_TIMEZONE (here Asia/Kolkata). On SQLite and
PostgreSQL, with the time-travel clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import select

from bot.core.models import Customer
from bot.core.settings import Settings
from tests.journeys.conftest import Kit, ist, make_kit

NEW_YORK = ZoneInfo("America/New_York")
MADRID = ZoneInfo("Europe/Madrid")
US_PHONE = "+12015550123"  # New Jersey: America/New_York
IN_PHONE = "+919812345678"


def _confirmation(kit: Kit, order_id: str) -> dict[str, object]:
    return next(m for m in kit.log(order_id) if m["journey"] == "order_confirmed")


def _due(entry: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(entry["due_at"]))


def test_a_us_and_an_indian_customer_get_different_quiet_hours_for_the_same_event(
        settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 10))  # Monday 10:00 in Kolkata is Sunday 23:30 in New York
    with kit.client:
        kit.post_order(order_id="IN1", phone=IN_PHONE, tracking_number="T-IN")
        kit.post_order(order_id="US1", phone=US_PHONE, tracking_number="T-US")
        assert _confirmation(kit, "IN1")["status"] == "queued"
        us = _confirmation(kit, "US1")
        assert us["status"] == "scheduled"
        assert _due(us) == datetime(2026, 11, 23, 8, tzinfo=NEW_YORK)
        kit.run_until(ist(23, 18))
        assert [s.to for s in kit.recorder.sent] == [IN_PHONE]
        kit.run_until(ist(23, 19))  # 08:00 in New York is 18:30 in Kolkata
        assert [s.to for s in kit.recorder.sent] == [IN_PHONE, US_PHONE]

        kit.clock.set(ist(23, 22, 30))  # the same event for both: night in Kolkata, noon in New York
        kit.event("IN1", "shipped")
        kit.event("US1", "shipped")
        assert kit.log("US1")[-1]["status"] == "queued"
        held = kit.log("IN1")[-1]
        assert held["status"] == "scheduled" and _due(held) == ist(24, 8)
    kit.service.db.dispose()


def test_a_number_whose_region_spans_zones_waits_for_morning_in_all_of_them(
        settings: Settings, auth: dict[str, str]) -> None:
    # A Spanish mobile may be in Madrid or on the Canary Islands, an hour behind.
    start = datetime(2026, 11, 23, 8, 30, tzinfo=MADRID)
    kit = make_kit(settings, auth, start)
    with kit.client:
        kit.post_order(phone="+34612345678", shipping_address={"country": "ES", "postal_code": "28013",
                                                               "city": "Madrid", "line1": "Calle Mayor 5"})
        entry = _confirmation(kit, "A1001")
        assert entry["status"] == "scheduled"
        assert _due(entry) == datetime(2026, 11, 23, 9, tzinfo=MADRID)  # 08:00 on the Canaries
    kit.service.db.dispose()


def test_the_customers_own_zone_wins_over_the_phone_number(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings, auth, ist(23, 22, 30))
    with kit.client:
        kit.post_order()
        assert _confirmation(kit, "A1001")["status"] == "scheduled"
        with kit.service.db.session() as session:
            customer = session.exec(select(Customer)).one()
            customer.timezone = "America/New_York"  # an Indian number, living in New York
            session.add(customer)
        kit.event("A1001", "shipped")
        assert kit.log("A1001")[-1]["status"] == "queued"
    kit.service.db.dispose()


def test_a_number_in_no_known_zone_follows_the_shop(settings: Settings, auth: dict[str, str]) -> None:
    kit = make_kit(settings.model_copy(update={"timezone": "America/New_York"}), auth, ist(23, 10))
    with kit.client:
        # 10:00 in Kolkata: quiet in New York (the shop's zone), day at the customer's (Kolkata).
        kit.post_order()
        assert _confirmation(kit, "A1001")["status"] == "queued"
        kit.post_order(order_id="T1", phone="+883510012345", tracking_number="T-T1")  # an international network
        assert _confirmation(kit, "T1")["status"] == "scheduled"
    kit.service.db.dispose()
