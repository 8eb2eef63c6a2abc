"""Reschedule: the customer picks a new delivery day and, optionally, a time window.

Validation (all from the order and the shop config, never invented):
no past dates; at most `reschedule.max_days_ahead` days ahead (default 7);
no carrier non-delivery weekdays or holidays (`reschedule.non_delivery_weekdays`,
`reschedule.holidays`); once the parcel is out for delivery, a change is a
same-day request for a person, so it is escalated.

The bot reads the change back ("Deliver on Sat 28 Nov, evening 4–8 pm?"); a
yes updates `delivery_date`/`delivery_window`, records an order event and
emits `delivery.rescheduled`. Must never change an order without that yes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from flows import instructions
from flows.base import (
    END,
    HANDOFF,
    Effect,
    EmitEvent,
    Escalate,
    Flow,
    FlowContext,
    OrderView,
    Reply,
    State,
    StepResult,
    UpdateOrder,
)
from flows.common import CHOOSE_ORDER, choose_step, reask_which, select_order, yes_no
from intents import Expecting

ASK_DATE = "ask_date"
CONFIRM = "confirm"
# Statuses in which a delivery day can still be chosen by the bot.
RESCHEDULABLE = {"placed", "confirmed", "packed", "shipped", "delayed", "failed_attempt", "out_for_delivery"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _settings(ctx: FlowContext) -> Mapping[str, Any]:
    section = ctx.config.get("reschedule", {})
    return section if isinstance(section, Mapping) else {}


def max_days_ahead(ctx: FlowContext) -> int:
    return int(_settings(ctx).get("max_days_ahead", 7))


def date_problem(day: date, ctx: FlowContext) -> str | None:
    """Why `day` cannot be a delivery day, as a template key, or None when it can."""
    if day < ctx.today:
        return "reschedule.past_date"
    if day > ctx.today + timedelta(days=max_days_ahead(ctx)):
        return "reschedule.too_far"
    closed = {str(d).lower() for d in _settings(ctx).get("non_delivery_weekdays", [])}
    holidays = {str(d) for d in _settings(ctx).get("holidays", [])}
    if WEEKDAYS[day.weekday()] in closed or day.isoformat() in holidays:
        return "reschedule.no_delivery_that_day"
    return None


def _iso_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


DEFAULT_WINDOWS = {"morning": "08:00-12:00", "afternoon": "12:00-16:00", "evening": "16:00-20:00"}
# Choices offered as buttons (WhatsApp list, Telegram keyboard, numbered on SMS): a label is
# `template|name=value`, rendered in the customer's language (bot.store.conversations.render_label).
DAYS_OFFERED = 7
BUTTON_DAY = "reschedule.button_day"
BUTTON_WINDOW = "reschedule.button_window"
YES_NO_BUTTONS = (("core.button_yes", "/btn:affirm:yes"), ("core.button_no", "/btn:deny:no"))


def _window_names(ctx: FlowContext) -> tuple[str, ...]:
    windows = _settings(ctx).get("windows") or DEFAULT_WINDOWS
    return tuple(str(name) for name in windows if str(name) in {"morning", "afternoon", "evening"})
NOT_OFFERED = "not_offered"  # a time outside every delivery window ("after 10 pm")


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def shop_window(value: str, ctx: FlowContext) -> str:
    """The shop's delivery window for what the customer asked ("after 6pm" -> evening).

    Named windows are kept; a time range maps to the window it overlaps most, unless the shop
    accepts exact times (`reschedule.exact_times`). A range no window touches is NOT_OFFERED."""
    windows = _settings(ctx).get("windows") or DEFAULT_WINDOWS
    if value in windows or _settings(ctx).get("exact_times") or "-" not in value:
        return value
    try:
        start, end = (_minutes(part) for part in value.split("-", 1))
        spans = {name: tuple(_minutes(p) for p in str(span).split("-", 1)) for name, span in windows.items()}
    except ValueError:
        return value
    overlap = {name: min(end, b) - max(start, a) for name, (a, b) in spans.items()}
    best = max(overlap, key=lambda name: overlap[name])
    return best if overlap[best] > 0 else NOT_OFFERED


def _read(ctx: FlowContext) -> tuple[date | None, str | None]:
    """The day and window the customer asks for (never one they rule out: see `intents.polarity`)."""
    found = ctx.classification.entity("date")
    window = ctx.classification.entity("time_window")
    day = _iso_day(found.value) if found is not None else None
    return day, (shop_window(str(window.value), ctx) if window is not None else None)


def _ruled_out(ctx: FlowContext, slots: Mapping[str, Any]) -> list[str]:
    """Days ruled out in this conversation so far, this message included (ISO, in order)."""
    days = [str(d) for d in slots.get("ruled_out", [])]
    for entity in ctx.classification.entities:
        if entity.type == "date_excluded":
            day = _iso_day(entity.value)
            if day is not None and day.isoformat() not in days:
                days.append(day.isoformat())
    return days


def next_delivery_days(ctx: FlowContext, ruled_out: list[str], count: int = 3) -> list[date]:
    """The next days a delivery can be booked, skipping closed days, holidays and ruled-out days."""
    days: list[date] = []
    day = ctx.today + timedelta(days=1)
    while len(days) < count and day <= ctx.today + timedelta(days=max_days_ahead(ctx)):
        if date_problem(day, ctx) is None and day.isoformat() not in ruled_out:
            days.append(day)
        day += timedelta(days=1)
    return days


def _eligible(ctx: FlowContext) -> tuple[OrderView, ...]:
    return tuple(o for o in ctx.orders if o.status in RESCHEDULABLE)


def start(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    if not ctx.orders:
        return StepResult(next_state=END, effects=(Reply("no_order"),))
    candidates = _eligible(ctx)
    if not candidates:
        return StepResult(next_state=END, effects=(Reply("reschedule.not_possible", {"order": ctx.orders[0]},
                                                         order_id=ctx.orders[0].order_id),))
    day, window = _read(ctx)
    if day is None and window is None and instructions.instruction(ctx) is not None:
        # "If I'm not in, leave it with the porter": directions for the courier, not a new day.
        return replace(instructions.start(slots, ctx), flow=instructions.FLOW.name)
    keep = {k: v for k, v in {"date": day.isoformat() if day else None, "window": window,
                              "ruled_out": _ruled_out(ctx, {})}.items() if v}
    return select_order(ctx, candidates, keep, begin)


def begin(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    day = date.fromisoformat(slots["date"]) if slots.get("date") else None
    window = slots.get("window")
    if order.status == "out_for_delivery":
        # The van is already out: only the carrier can still change today's run, so a person takes it.
        note = f"reschedule requested while out for delivery: date={day.isoformat() if day else '?'} window={window or '-'}"
        return StepResult(next_state=HANDOFF, effects=(
            Reply("reschedule.out_for_delivery", {"order": order}, order_id=order.order_id),
            Escalate(reason="reschedule_out_for_delivery", order_id=order.order_id, note=note),
        ))
    return _propose(order, day, window, ctx, first=True, ruled_out=list(slots.get("ruled_out", [])))


def continue_from(order: OrderView, ctx: FlowContext) -> StepResult | None:
    """From another flow (WISMO): "where is my parcel, can you send it Saturday instead" also asks to
    move the delivery. The read-back of the day asked for, in this flow; None when nothing to move."""
    day, window = _read(ctx)
    if (day is None and window is None) or order.status not in RESCHEDULABLE or order.status == "out_for_delivery":
        return None
    result = _propose(order, day, window, ctx, ruled_out=_ruled_out(ctx, {}))
    return replace(result, flow=FLOW.name)


def _propose(order: OrderView, day: date | None, window: str | None, ctx: FlowContext, *, first: bool = False,
             understood: bool = True, ruled_out: list[str] | None = None) -> StepResult:
    slots: dict[str, Any] = {"order_id": order.order_id}
    if window:
        slots["window"] = window
    if ruled_out:
        slots["ruled_out"] = ruled_out
    if window == NOT_OFFERED:
        # A time no delivery window covers: ask again rather than drop it silently.
        slots.pop("window", None)
        if day is not None:
            slots["date"] = day.isoformat()
        return _ask_date(order, slots, ctx, template="reschedule.time_not_offered", day=day)
    if day is None and ruled_out:
        # "Not Monday": ask which day instead, offering the next days that are not ruled out.
        return _ask_date(order, slots, ctx, template="reschedule.ask_date_ruled_out")
    if day is None:
        return _ask_date(order, slots, ctx, template="reschedule.ask_date" if first else "reschedule.ask_date_again",
                         understood=understood)
    problem = date_problem(day, ctx)
    if problem is not None:
        # Understood, only not deliverable: not a misunderstanding, so it never counts toward a hand-off.
        return _ask_date(order, slots, ctx, template=problem, day=day)
    slots["date"] = day.isoformat()
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("reschedule.read_back", {"order": order, "date": day, "window": window}, order_id=order.order_id,
                       buttons=YES_NO_BUTTONS),),
        slots=slots,
        expecting=Expecting.YES_NO,
    )


def _ask_date(order: OrderView, slots: Mapping[str, Any], ctx: FlowContext, *, template: str,
              day: date | None = None, understood: bool = True) -> StepResult:
    ruled_out = [str(d) for d in slots.get("ruled_out", [])]
    if template == "reschedule.time_not_offered":
        # The day is fine, the time is not: offer the shop's windows (one tap each).
        buttons = tuple((f"{BUTTON_WINDOW}|window={w}", f"/btn:reschedule:{w}") for w in _window_names(ctx))
    else:
        buttons = tuple((f"{BUTTON_DAY}|date={d.isoformat()}", f"/btn:reschedule:{d.isoformat()}")
                        for d in next_delivery_days(ctx, ruled_out, count=DAYS_OFFERED))
    return StepResult(
        next_state=ASK_DATE,
        effects=(Reply(template, {"order": order, "date": day, "max_days": max_days_ahead(ctx),
                                  "latest": ctx.today + timedelta(days=max_days_ahead(ctx)),
                                  "closed": [str(d).capitalize() for d in _settings(ctx).get("non_delivery_weekdays", [])],
                                  "ruled_out": [date.fromisoformat(d) for d in ruled_out],
                                  "next_days": next_delivery_days(ctx, ruled_out)},
                       order_id=order.order_id, buttons=buttons),),
        slots=slots,
        expecting=Expecting.DATE,
        understood=understood,
    )


def ask_date(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    day, window = _read(ctx)
    window = window or slots.get("window")
    if day is None and window is not None and slots.get("date"):
        day = _iso_day(slots["date"])  # the day was fine, only the time was asked again
    ruled_out = _ruled_out(ctx, slots)
    newly_ruled_out = len(ruled_out) > len(slots.get("ruled_out", []))
    if day is None and not newly_ruled_out and yes_no(ctx) == "no":
        return StepResult(next_state=END, effects=(Reply("reschedule.kept", {"order": order}, order_id=order.order_id),))
    return _propose(order, day, window, ctx, understood=day is not None or window is not None or newly_ruled_out,
                    ruled_out=ruled_out)


def confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END, effects=(Reply("core.order_gone"),))
    day, window = _read(ctx)
    ruled_out = _ruled_out(ctx, slots)
    if slots.get("date") in ruled_out and day is None:
        # "No, not Friday": the day read back is ruled out, so never confirm it; ask again.
        return _propose(order, None, window or slots.get("window"), ctx, ruled_out=ruled_out)
    if day is not None or window is not None:
        # A correction ("no, I meant Sunday", "evening instead"): read the new choice back.
        new_day = day or date.fromisoformat(slots["date"])
        return _propose(order, new_day, window or slots.get("window"), ctx, ruled_out=ruled_out)
    answer = yes_no(ctx)
    if answer == "yes":
        return StepResult(next_state=END, effects=rescheduled(order, date.fromisoformat(slots["date"]),
                                                              slots.get("window"),
                                                              note="customer chose a new delivery day"))
    if answer == "no":
        keep = {"order_id": order.order_id, "ruled_out": ruled_out} if ruled_out else {"order_id": order.order_id}
        return _ask_date(order, keep, ctx, template="reschedule.which_day_then")
    return StepResult(
        next_state=CONFIRM,
        effects=(Reply("reschedule.read_back_again", {"order": order, "date": date.fromisoformat(slots["date"]),
                                                      "window": slots.get("window")}, order_id=order.order_id),),
        slots=dict(slots), expecting=Expecting.YES_NO, understood=False,
    )


def rescheduled(order: OrderView, day: date, window: str | None, *, note: str) -> tuple[Effect, ...]:
    """What a confirmed new delivery day does: the order changes (with its event), logistics hears
    `delivery.rescheduled`, and the customer is told. The bot's yes and an agent's action share it."""
    return (
        UpdateOrder(order.order_id, {"delivery_date": day, "delivery_window": window},
                    event_type="rescheduled", note=note),
        EmitEvent("delivery.rescheduled", order.order_id, {
            "delivery_date": day.isoformat(), "delivery_window": window,
            "previous_date": order.expected_date.isoformat() if order.expected_date else None,
        }),
        Reply("reschedule.done", {"order": order, "date": day, "window": window}, order_id=order.order_id),
    )


def window_offered(window: str, ctx: FlowContext) -> bool:
    """A window named outright: one of the shop's, or an exact `HH:MM-HH:MM` where it takes exact times."""
    if window in (_settings(ctx).get("windows") or DEFAULT_WINDOWS):
        return True
    return bool(_settings(ctx).get("exact_times")) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d",
                                                                   window) is not None


def can_reschedule(order: OrderView) -> bool:
    return order.status in RESCHEDULABLE


def choice_problem(order: OrderView, day: date, window: str | None, ctx: FlowContext) -> str | None:
    """Why a delivery day and window chosen outright (by an agent) cannot be booked, as a template key,
    or None: the order's status, the shop's calendar (`date_problem`) and its delivery windows."""
    if not can_reschedule(order):
        return "reschedule.not_possible"
    if window and not window_offered(window, ctx):
        return "reschedule.time_not_offered"
    return date_problem(day, ctx)


def reprompt_date(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    return _ask_date(order, slots, ctx, template="reschedule.ask_date")


def reprompt_confirm(slots: Mapping[str, Any], ctx: FlowContext) -> StepResult:
    order = ctx.order(slots.get("order_id"))
    if order is None:
        return StepResult(next_state=END)
    return _propose(order, date.fromisoformat(slots["date"]), slots.get("window"), ctx)


FLOW = Flow(
    name="reschedule",
    timeout=timedelta(hours=2),  # how long the open question waits for an answer
    start=start,
    start_goes_to=(END, CHOOSE_ORDER, ASK_DATE, CONFIRM, HANDOFF),
    states={
        CHOOSE_ORDER: State(choose_step(begin), Expecting.CHOICE, goes_to=(ASK_DATE, CONFIRM, HANDOFF, CHOOSE_ORDER),
                            description="which order?", reprompt=reask_which),
        ASK_DATE: State(ask_date, Expecting.DATE, goes_to=(CONFIRM, ASK_DATE, END),
                        description="which day (and window)?", reprompt=reprompt_date),
        CONFIRM: State(confirm, Expecting.YES_NO, goes_to=(END, CONFIRM, ASK_DATE),
                       description="read back: deliver on that day?", reprompt=reprompt_confirm),
    },
    intents=frozenset({"reschedule"}),
    description="Change the delivery day and time window, validated against the shop's calendar.",
)
