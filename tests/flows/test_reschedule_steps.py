"""Reschedule steps, pure: validation, read-back, the yes that changes the order, corrections."""

from __future__ import annotations

from datetime import date

from flows import reschedule
from flows.base import END, HANDOFF, EmitEvent, Escalate, Reply, UpdateOrder
from intents import Expecting, Intent
from tests.flows.support import ctx, order


def _only(effects: tuple[object, ...], kind: type) -> list[object]:
    return [e for e in effects if isinstance(e, kind)]


def test_dates_outside_the_calendar_are_refused() -> None:
    c = ctx("x")
    assert reschedule.date_problem(date(2026, 11, 20), c) == "reschedule.past_date"
    assert reschedule.date_problem(date(2026, 12, 1), c) == "reschedule.too_far"  # 8 days ahead
    assert reschedule.date_problem(date(2026, 11, 29), c) == "reschedule.no_delivery_that_day"  # Sunday
    assert reschedule.date_problem(date(2026, 11, 30), c) is None  # exactly 7 days ahead
    assert reschedule.date_problem(date(2026, 11, 23), c) is None  # today
    holiday = ctx("x", config={"reschedule": {"holidays": ["2026-11-27"], "non_delivery_weekdays": []}})
    assert reschedule.date_problem(date(2026, 11, 27), holiday) == "reschedule.no_delivery_that_day"


def test_a_date_and_window_are_read_back_without_changing_anything() -> None:
    result = reschedule.start({}, ctx("saturday evening", Intent.RESCHEDULE, ("date", "2026-11-28"),
                                      ("time_window", "evening"), orders=(order(),)))
    assert result.next_state == reschedule.CONFIRM and result.expecting is Expecting.YES_NO
    assert not _only(result.effects, UpdateOrder) and not _only(result.effects, EmitEvent)
    reply = _only(result.effects, Reply)[0]
    assert isinstance(reply, Reply) and reply.template == "reschedule.read_back"
    assert reply.vars["date"] == date(2026, 11, 28) and reply.vars["window"] == "evening"


def test_yes_updates_the_order_and_emits_delivery_rescheduled() -> None:
    slots = {"order_id": "A1001", "date": "2026-11-28", "window": "evening"}
    result = reschedule.confirm(slots, ctx("yes", Intent.AFFIRM, ("yes_no", "yes"), orders=(order(),)))
    assert result.next_state == END
    update = _only(result.effects, UpdateOrder)[0]
    assert isinstance(update, UpdateOrder)
    assert update.changes == {"delivery_date": date(2026, 11, 28), "delivery_window": "evening"}
    assert update.event_type == "rescheduled"
    event = _only(result.effects, EmitEvent)[0]
    assert isinstance(event, EmitEvent) and event.type == "delivery.rescheduled"
    assert event.data["delivery_date"] == "2026-11-28" and event.data["previous_date"] == "2026-11-26"


def test_no_i_meant_sunday_reads_back_the_new_day() -> None:
    slots = {"order_id": "A1001", "date": "2026-11-28", "window": "evening"}
    config = {"reschedule": {"non_delivery_weekdays": []}}
    result = reschedule.confirm(slots, ctx("no, I meant Sunday", Intent.DENY, ("yes_no", "no"), ("date", "2026-11-29"),
                                           orders=(order(),), config=config))
    assert result.next_state == reschedule.CONFIRM
    assert result.slots["date"] == "2026-11-29" and result.slots["window"] == "evening"
    assert not _only(result.effects, UpdateOrder)


def test_an_unclear_answer_to_the_read_back_changes_nothing_and_counts_as_misunderstood() -> None:
    slots = {"order_id": "A1001", "date": "2026-11-28"}
    result = reschedule.confirm(slots, ctx("blorp", Intent.AFFIRM, orders=(order(),), confidence=0.3))
    assert result.next_state == reschedule.CONFIRM and not result.understood
    assert not _only(result.effects, UpdateOrder)


def test_out_for_delivery_is_escalated_not_applied() -> None:
    result = reschedule.start({}, ctx("tomorrow", Intent.RESCHEDULE, ("date", "2026-11-24"),
                                      orders=(order(status="out_for_delivery"),)))
    assert result.next_state == HANDOFF
    assert _only(result.effects, Escalate) and not _only(result.effects, UpdateOrder)


def test_several_orders_ask_which_first() -> None:
    two = (order(order_id="A1002"), order(order_id="A1001"))
    result = reschedule.start({}, ctx("friday", Intent.RESCHEDULE, ("date", "2026-11-27"), orders=two))
    assert result.next_state == "choose_order" and result.expecting is Expecting.CHOICE
    assert result.slots["date"] == "2026-11-27"
