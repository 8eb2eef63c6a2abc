"""The shape of a conversation flow: a declarative state table plus pure steps.

A flow never touches the database, a provider SDK or FastAPI. It reads a
`FlowContext` (snapshots of the customer and their orders, the classified
message, the clock, the shop's config) and returns a `StepResult`: the next
state, the slots to keep, and *effects* as data (`Reply`, `UpdateOrder`,
`EmitEvent`, `Escalate`, …). `bot.conversation.engine` applies the effects in the same
transaction that writes the outbox. Pure steps are therefore testable with
no database at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from intents import Classification, Expecting, Intent

END = "END"
TIMEOUT = "TIMEOUT"
HANDOFF = "HANDOFF"
RESERVED_STATES = (END, TIMEOUT, HANDOFF)


# ---------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class OrderView:
    order_id: str
    status: str
    items: tuple[Mapping[str, Any], ...]
    currency: str
    total: str
    payment_method: str
    shipping_address: Mapping[str, Any]
    promised_date: date | None
    delivery_date: date | None
    delivery_window: str | None
    cod_status: str | None
    address_status: str
    carrier: str
    tracking_number: str
    tracking_url: str
    eta: date | None = None
    delivered_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status not in {"delivered", "returned", "cancelled"}

    @property
    def expected_date(self) -> date | None:
        """The date the customer should expect: their chosen day, the carrier's ETA, or the promise."""
        return self.delivery_date or self.eta or self.promised_date

    @property
    def item_names(self) -> str:
        return ", ".join(str(i.get("name", "")) for i in self.items if i.get("name"))


@dataclass(frozen=True)
class CustomerView:
    id: int
    name: str
    locale: str
    channel: str
    has_phone: bool = True


@dataclass(frozen=True)
class FlowContext:
    text: str
    classification: Classification
    customer: CustomerView
    orders: tuple[OrderView, ...]
    now: datetime
    timezone: str
    channel: str
    config: Mapping[str, Any] = field(default_factory=dict)
    locale: str = "en"  # the reply language: the customer's, or the language they write in
    media_urls: tuple[str, ...] = ()  # photos attached to this message (returns evidence)
    last_order_id: str | None = None  # the order the last few minutes were about: the default for "it"

    @property
    def intent(self) -> Intent:
        return self.classification.intent

    @property
    def today(self) -> date:
        from zoneinfo import ZoneInfo

        return self.now.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def open_orders(self) -> tuple[OrderView, ...]:
        return tuple(o for o in self.orders if o.is_open)

    def order(self, order_id: str | None) -> OrderView | None:
        return next((o for o in self.orders if o.order_id == order_id), None)


# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Reply:
    """A message to the customer, rendered from `data/templates/<locale>.yml`."""

    template: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    buttons: tuple[tuple[str, str], ...] = ()  # (label or label template key, payload)
    order_id: str | None = None
    prefix: str = ""  # template key rendered before this reply ("Back to your question: …")
    suffix: str = ""  # template key rendered after it ("… Reply AGENT for a person.")


@dataclass(frozen=True)
class UpdateOrder:
    order_id: str
    changes: Mapping[str, Any]
    event_type: str | None = None  # recorded as an order event (source "bot")
    note: str = ""


@dataclass(frozen=True)
class EmitEvent:
    """A logistics event (DESIGN.md types) for the webhook and the feed."""

    type: str
    order_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Escalate:
    reason: str
    order_id: str | None = None
    note: str = ""
    urgent: bool = False  # the shop's shorter `escalation.urgent_sla_minutes` applies


@dataclass(frozen=True)
class SetOptOut:
    opted_out: bool
    channel: str | None = None  # None = the channel the message came on
    source: str = "conversation"  # for the consent ledger: keyword | button | conversation
    detail: str = ""  # e.g. the keyword the customer sent


@dataclass(frozen=True)
class RateEscalation:
    """The customer's one-tap satisfaction score (1-5) for the escalation a person just resolved."""

    escalation_id: int
    score: int


Effect = Reply | UpdateOrder | EmitEvent | Escalate | SetOptOut | RateEscalation


@dataclass(frozen=True)
class StepResult:
    next_state: str
    effects: tuple[Effect, ...] = ()
    slots: Mapping[str, Any] = field(default_factory=dict)
    expecting: Expecting = Expecting.NOTHING
    choices: tuple[str, ...] = ()
    understood: bool = True  # False counts towards "two misunderstandings offer a human"
    flow: str | None = None  # continue in another flow's state (e.g. WISMO "delivered, anything wrong?" -> returns)


Step = Callable[[Mapping[str, Any], FlowContext], StepResult]


@dataclass(frozen=True)
class State:
    """One row of a flow's table: the step that handles a message in this state,
    what the bot is waiting for, and the states it may move to (for the diagram)."""

    step: Step
    expecting: Expecting = Expecting.NOTHING
    goes_to: tuple[str, ...] = ()
    description: str = ""
    # The open question, asked again after an interruption has been answered.
    reprompt: Callable[[Mapping[str, Any], FlowContext], StepResult] | None = None
    # Intents this state answers itself even though they would start another flow
    # (e.g. a date while asking for a date reads as `reschedule`).
    accepts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Flow:
    name: str
    start: Step  # called with empty slots when the flow is entered
    states: Mapping[str, State]
    timeout: timedelta = timedelta(hours=2)
    start_goes_to: tuple[str, ...] = ()
    description: str = ""
    intents: frozenset[str] = frozenset()  # the intents that belong to this flow (not interruptions)

    def mermaid(self) -> str:
        """A Mermaid state diagram of this flow's table (engine-wide rules included)."""
        minutes = int(self.timeout.total_seconds() // 60)
        lines = ["stateDiagram-v2", f"    [*] --> start: {self.intents and ' / '.join(sorted(self.intents)) or self.name}"]
        for target in self.start_goes_to:
            lines.append(f"    start --> {_node(target)}")
        for name, state in self.states.items():
            if state.description:
                lines.append(f"    {name}: {name} - {state.description} (waits for {state.expecting.value})")
            for target in state.goes_to:
                lines.append(f"    {name} --> {_node(target)}")
            lines.append(f"    {name} --> TIMEOUT: no reply for {minutes} min")
            lines.append(f"    {name} --> HANDOFF: 3 misunderstandings")
        lines.append("    TIMEOUT --> [*]")
        lines.append("    HANDOFF --> [*]")
        return "\n".join(dict.fromkeys(lines))


def _node(state: str) -> str:
    return "[*]" if state == END else state.replace(".", "__")


def done(*effects: Effect, understood: bool = True) -> StepResult:
    return StepResult(next_state=END, effects=effects, understood=understood)
