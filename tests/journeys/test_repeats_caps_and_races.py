"""Repeated carrier statuses, caps and racing identical events.

A repeated `shipped` with a new time sent the message again and used up the
per-order cap, which then dropped the `delivered` message; identical events
racing on PostgreSQL answered 500 (unique violation) instead of a duplicate.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from tests.journeys.conftest import Kit, ist, make_kit


def _journeys(kit: Kit, order_id: str = "A1001") -> list[tuple[str, str]]:
    return [(m["template"], m["status"]) for m in kit.log(order_id) if m["direction"] == "out"]


def test_the_same_status_again_sends_nothing(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "shipped")
    kit.clock.advance(timedelta(hours=2))
    again = kit.event("A1001", "shipped")  # the carrier's feed repeats itself with a new time
    assert again["duplicate"] is False and again["status"] == "shipped"
    kit.run_until(kit.clock())
    assert [t for t, _ in _journeys(kit)].count("journey.shipped") == 1


def test_a_delay_sends_again_only_with_a_new_eta(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "shipped")
    kit.event("A1001", "delayed", eta="2026-11-27")
    kit.clock.advance(timedelta(hours=1))
    kit.event("A1001", "delayed", eta="2026-11-27")
    kit.clock.advance(timedelta(hours=1))
    kit.event("A1001", "delayed", eta="2026-11-28")
    kit.run_until(kit.clock())
    assert [t for t, _ in _journeys(kit)].count("journey.delayed") == 2


def test_a_second_failed_attempt_is_news(kit: Kit) -> None:
    kit.post_order()
    kit.event("A1001", "shipped")
    kit.event("A1001", "out_for_delivery")
    kit.event("A1001", "failed_attempt")
    kit.clock.advance(timedelta(days=1))
    kit.event("A1001", "out_for_delivery")
    kit.event("A1001", "failed_attempt")
    kit.run_until(kit.clock())
    assert [t for t, _ in _journeys(kit)].count("journey.failed_attempt") == 2


def test_caps_never_drop_a_transactional_message(settings, auth) -> None:  # type: ignore[no-untyped-def]
    kit = make_kit(settings, auth, ist(23, 10), contact_policy={"caps": {"per_order_per_day": 1}})
    with kit.client:
        kit.post_order()
        for status in ("shipped", "shipped", "out_for_delivery", "failed_attempt", "out_for_delivery", "delivered"):
            kit.clock.advance(timedelta(minutes=30))
            kit.event("A1001", status)
            kit.run_until(kit.clock())  # each message goes out before the next status supersedes it
        sent = _journeys(kit)
        for template in ("journey.shipped", "journey.out_for_delivery", "journey.failed_attempt", "journey.delivered"):
            assert (template, "cancelled") not in sent, sent
            assert template in [t for t, _ in sent], template
    kit.service.db.dispose()


def test_identical_events_racing_are_one_event_and_duplicates(kit: Kit) -> None:
    kit.post_order()
    at = kit.clock().isoformat()
    barrier = threading.Barrier(6)
    statuses: list[int] = []
    bodies: list[dict[str, object]] = []

    def post() -> None:
        barrier.wait(10)
        response = kit.client.post("/api/orders/A1001/events", json={"type": "shipped", "at": at}, headers=kit.auth)
        statuses.append(response.status_code)
        bodies.append(response.json())

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 5 + [201], bodies
    assert sum(1 for b in bodies if b.get("duplicate") is True) == 5
    kit.run_until(kit.clock())
    assert [t for t, _ in _journeys(kit)].count("journey.shipped") == 1
