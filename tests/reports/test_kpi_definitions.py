"""Each KPI counts what its definition says, on a small shop built through the real API and pipeline with a
known story per order (SQLite and PostgreSQL): WISMO days, false resolutions, containment, escalation reply
time, COD returns, failed-attempt recovery, cancellations, and a journey holdout reported on its own."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bot.core.channels import InboundMessage
from bot.core.holdout import assign
from bot.core.settings import Settings
from bot.reports.outcomes import build_report
from tests.journeys.conftest import Kit, ist, make_kit

HOLDOUT = {"share": 0.5, "journeys": {"shipped": 0.5}, "salt": "kpi-definitions"}


def _ids(group: str, count: int) -> list[str]:
    """Order ids the hash puts in `group` (the API is checked to agree below)."""
    config = {"holdout": HOLDOUT}
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
