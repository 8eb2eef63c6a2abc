"""Each KPI counts what its definition says, on a small shop built through the real API and pipeline with a
known story per order (SQLite and PostgreSQL): WISMO days, false resolutions, containment, escalation reply
time, COD returns, failed-attempt recovery, cancellations, and a journey holdout reported on its own."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bot.core.channels import InboundMessage
from bot.core.holdout import assign
from bot.core.models import Message
from bot.core.settings import Settings
from bot.reports.outcomes import build_report
from tests.journeys.conftest import Kit, ist, make_kit

HOLDOUT = {"share": 0.5, "journeys": {"shipped": 0.5}, "salt": "kpi-definitions"}
GLOBAL_HOLDOUT = {"share": 0.5, "salt": "kpi-definitions"}


def _ids(group: str, count: int, holdout: dict[str, object] = HOLDOUT) -> list[str]:
    """Order ids the hash puts in `group` (the API is checked to agree below)."""
    config = {"holdout": holdout}
    return [oid for oid in (f"K{i:03d}" for i in range(200)) if assign(oid, config).group == group][:count]


def _say(kit: Kit, phone: str, text: str) -> None:
    kit.service.handle_inbound(InboundMessage(channel="sms", text=text, phone=phone, received_at=kit.clock(),
                                              provider_message_id=f"SM{uuid.uuid4().hex}"))


@pytest.fixture
def kit(settings: Settings, auth: dict[str, str]) -> Kit:
    return make_kit(settings, auth, ist(23, 10), holdout=HOLDOUT)


def test_each_kpi_counts_its_definition(kit: Kit) -> None:
    t1, t2, t3, t4 = _ids("treatment", 4)
    h1, h2, h3, h4 = _ids("holdout", 4)
    phones = {oid: f"+91981230{i:04d}" for i, oid in enumerate((t1, t2, t3, t4, h1, h2, h3, h4))}
    with kit.client:
        for oid in (t1, t2, t3, t4, h1, h3, h4):
            assert kit.post_order(order_id=oid, phone=phones[oid])["holdout"]["group"] == assign(
                oid, {"holdout": HOLDOUT}).group
        kit.post_order(order_id=h2, phone=phones[h2], payment_method="cod")
        kit.clock.set(ist(23, 12))
        _say(kit, phones[t1], "where is my order?")  # t1: asks, and asks again two days later (false resolution)
        _say(kit, phones[h1], "where is my order?")  # h1: asks once, the bot's answer holds
        _say(kit, phones[t2], "I want to talk to a person")  # t2: a person answers 30 minutes later
        kit.clock.advance(timedelta(minutes=30))
        escalation = kit.client.get("/api/escalations?status=open", headers=kit.auth).json()["items"][0]
        reply = kit.client.post(f"/api/escalations/{escalation['id']}/reply", json={"text": "Looking now."},
                                headers=kit.auth)
        assert reply.status_code == 202, reply.text
        kit.event(h3, "cancelled")  # h3: cancelled before shipping
        kit.clock.set(ist(24, 10))
        for oid in (h2, t3):
            kit.event(oid, "shipped")
        kit.clock.set(ist(25, 9))
        for oid in (h2, t3):
            kit.event(oid, "out_for_delivery")
        kit.clock.set(ist(25, 12))
        _say(kit, phones[t1], "where is my order? still nothing")
        kit.clock.set(ist(25, 15))
        kit.event(h2, "returned")  # h2: COD parcel refused (RTO)
        kit.event(t3, "failed_attempt")  # t3: fails, then is delivered the next day
        kit.clock.set(ist(26, 9))
        kit.event(t3, "out_for_delivery")
        kit.clock.set(ist(26, 14))
        kit.event(t3, "delivered")
        kit.run_until(kit.clock() + timedelta(minutes=5))
        with kit.service.db.read() as session:
            report = build_report(session, config=kit.service.runtime.shop_config, now=ist(23, 10) + timedelta(weeks=5))
    kit.service.db.dispose()

    assert report["since"] == "2026-11-23" and report["compared_weeks"][0] == "2026-11-23"
    glob, *journeys = report["experiments"]
    assert glob["orders"] == {"treatment": 4, "holdout": 4}
    k = {row["key"]: row for row in glob["kpis"]}
    assert k["wismo_per_1000"]["treatment"] == pytest.approx(1000 * 2 / 4)  # t1 asked on two days
    assert k["wismo_per_1000"]["holdout"] == pytest.approx(1000 * 1 / 4)
    assert (k["containment_rate"]["n_treatment"], k["containment_rate"]["treatment"]) == (2, pytest.approx(50.0))
    assert (k["containment_rate"]["n_holdout"], k["containment_rate"]["holdout"]) == (1, pytest.approx(100.0))
    assert k["false_resolution_rate"]["treatment"] == pytest.approx(50.0)  # t1 came back; t2 had a person
    assert k["false_resolution_rate"]["holdout"] == pytest.approx(0.0)
    assert (k["cod_rto_rate"]["n_holdout"], k["cod_rto_rate"]["holdout"]) == (1, pytest.approx(100.0))
    assert k["cod_rto_rate"]["n_treatment"] == 0 and k["cod_rto_rate"]["treatment"] is None
    assert k["failed_attempts_per_1000"]["treatment"] == pytest.approx(1000 / 4)
    assert (k["failed_recovery_rate"]["n_treatment"], k["failed_recovery_rate"]["treatment"]) == (1, pytest.approx(100.0))
    assert k["cancellation_rate"]["holdout"] == pytest.approx(25.0) and k["cancellation_rate"]["treatment"] == 0
    assert glob["escalations"]["treatment"]["answered"] == 1
    assert glob["escalations"]["treatment"]["median_minutes"] == pytest.approx(30, abs=0.1)
    assert k["messages_per_order"]["holdout"] < k["messages_per_order"]["treatment"]
    # The "shipped" journey holdout is its own experiment, among the global treatment only.
    (shipped,) = journeys
    assert shipped["journey"] == "shipped"
    arms = [assign(oid, {"holdout": HOLDOUT}).journeys["shipped"] for oid in (t1, t2, t3, t4)]
    assert shipped["orders"] == {"treatment": arms.count("treatment"), "holdout": arms.count("holdout")}


def test_cost_per_order_sums_the_prices_the_planner_recorded(settings: Settings, auth: dict[str, str]) -> None:
    """One price table: each message costs what the send planner recorded when it queued it (a later change of
    `messaging.pricing` does not reprice it); a message without a recorded price (queued before prices were
    recorded) or sent on another channel than planned costs the planner's price at report time."""
    queued_with = {"sms": {"IN": 0.002, "*": 0.05}}
    kit = make_kit(settings, auth, ist(23, 10), holdout=GLOBAL_HOLDOUT, messaging={"pricing": queued_with})
    t1, t2 = _ids("treatment", 2, GLOBAL_HOLDOUT)
    (h1,) = _ids("holdout", 1, GLOBAL_HOLDOUT)
    with kit.client:
        for i, oid in enumerate((t1, t2, h1)):
            kit.post_order(order_id=oid, phone=f"+91981240{i:04d}")
        kit.run_until(kit.clock() + timedelta(minutes=5))
        kit.clock.set(ist(24, 10))
        for oid in (t1, t2, h1):
            kit.event(oid, "shipped")
        kit.run_until(kit.clock() + timedelta(minutes=5))
    with kit.service.db.session() as session:
        billed = list(session.exec(select(Message).where(Message.direction == "out",
                                                         col(Message.status).in_(("sent", "delivered")))
                                   .order_by(col(Message.id))))
        assert len(billed) >= 4 and {m.plan["price"] for m in billed if m.plan} == {0.002}
        legacy, moved = billed[0], billed[1]
        legacy.plan = None  # as if queued before the planner recorded prices
        moved.plan = {**(moved.plan or {}), "channel": "whatsapp", "price": 7.0}  # planned elsewhere: not its price
        session.add(legacy)
        session.add(moved)
    # The shop's prices changed since: recorded prices stand, the two others are priced today (0.9 per SMS).
    config = {**kit.service.runtime.shop_config,
              "messaging": {"pricing": {"currency": "EUR", "sms": {"IN": 0.9, "*": 0.9}}}}
    with kit.service.db.read() as session:
        report = build_report(session, config=config, now=ist(23, 10) + timedelta(weeks=5))
    kit.service.db.dispose()

    expected_total = 0.9 * 2 + 0.002 * (len(billed) - 2)
    glob = report["experiments"][0]
    cost = {row["key"]: row for row in glob["kpis"]}["cost_per_order"]
    assert cost["treatment"] == pytest.approx(expected_total / 2, abs=1e-4)
    assert cost["holdout"] == pytest.approx(0.0)  # the holdout got no proactive message
    assert report["currency"] == "EUR"


def test_a_price_free_table_has_no_cost_kpi(settings: Settings, auth: dict[str, str]) -> None:
    free = {"whatsapp_fee": 0.0, "whatsapp": {"*": {"marketing": 0.0, "utility": 0.0}}, "sms": {"*": 0.0}}
    kit = make_kit(settings, auth, ist(23, 10), holdout=GLOBAL_HOLDOUT)
    config = {**kit.service.runtime.shop_config, "messaging": {"pricing": free}}
    with kit.service.db.read() as session:
        report = build_report(session, config=config, now=ist(23, 10) + timedelta(weeks=5))
    kit.service.db.dispose()
    assert "cost_per_order" not in {row["key"] for row in report["experiments"][0]["kpis"]}
