"""`doorstep simulate-shop`: a synthetic shop with a known true effect of messaging, to check the report.

Orders, carrier events, customers who ask where their order is, confirm cash on delivery, fail
deliveries, refuse parcels and ask for a person all go through the real service (`save_order`,
`record_order_event`, `handle_inbound`, the agent's reply and resolve) on a fake clock, with the
real holdout assignment and journeys; the dispatcher sends to a recorder instead of a provider.
Only the customers' and carriers' behaviour is drawn, from `ShopModel`, and it depends on the
order's global holdout group through one number, `effect`: the share of the problems that messaging
prevents. `ShopModel.truth()` says what a perfect report would find, so the report can be checked
against it. It writes into an empty database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bot.core.clock import FakeClock
    from bot.core.settings import Settings
    from bot.service import Service

WISMO_TEXTS = ("where is my order?", "when will my order arrive", "any update on my parcel?", "has my order shipped yet")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class ShopModel:
    """The synthetic shop's customers and carrier. Rates are per order; `effect` applies to the treatment."""

    orders: int = 1000
    weeks: int = 4
    holdout_share: float = 0.5
    effect: float = 0.4
    seed: int = 7
    cod_share: float = 0.4
    cancel: float = 0.03  # cancelled before shipping, whatever the group
    wismo: float = 0.30  # the holdout's chance to ask "where is my order?"
    wismo_again: float = 0.2  # ... and to ask again two days later
    cod_confirm: float = 0.75  # a treatment COD customer answers the question with "yes" (when effect > 0)
    rto: float = 0.20  # the holdout's chance that a COD parcel is refused at the door
    failed: float = 0.12  # a delivery attempt fails, whatever the group
    recover: float = 0.6  # the holdout's chance that the next attempt delivers
    human: float = 0.05  # a customer asks for a person, whatever the group
    whatsapp_share: float = 0.3

    def rates(self, treated: bool) -> dict[str, float]:
        e = self.effect if treated else 0.0
        return {"wismo": self.wismo * (1 - e), "rto": self.rto * (1 - e), "recover": 1 - (1 - self.recover) * (1 - e)}

    def shop_overrides(self) -> dict[str, Any]:
        """The doorstep.yaml settings the simulated service runs with: the holdout, drawn as in production."""
        return {"holdout": {"share": self.holdout_share, "salt": f"sim-{self.seed}"}}

    def truth(self) -> dict[str, float]:
        """Treatment minus holdout, in the report's units, as an infinite sample would measure it."""
        kept = 1 - self.cancel
        out: dict[str, float] = {}
        per_arm = {}
        for treated in (True, False):
            r = self.rates(treated)
            per_arm[treated] = {
                "wismo_per_1000": 1000 * kept * r["wismo"] * (1 + self.wismo_again),
                "cod_rto_rate": 100 * kept * (self.failed * (1 - r["recover"]) + (1 - self.failed) * r["rto"]),
                "failed_recovery_rate": 100 * r["recover"],
                "failed_attempts_per_1000": 1000 * kept * self.failed,
                "cancellation_rate": 100 * self.cancel,
            }
        for key in per_arm[True]:
            out[key] = per_arm[True][key] - per_arm[False][key]
        return out


@dataclass
class Outcome:
    database: str
    start: datetime
    end: datetime
    orders: int
    truth: dict[str, float]


def simulation_settings(settings: Settings, database: str = "") -> Settings:
    """`settings` for a simulated shop: no provider's rate limit to spare (the recorder takes any rate), and
    `database` when given."""
    update: dict[str, Any] = {"twilio_sms_rate": 10_000.0, "twilio_whatsapp_rate": 10_000.0}
    if database:
        update["database_url"] = database
    return settings.model_copy(update=update)


class _Recorder:
    """Accepts every message, like a provider that never fails."""

    async def send(self, message: Any) -> Any:
        from bot.core.channels import Receipt

        return Receipt(provider_id=f"sim-{message.message_id}")


def _order_payload(index: int, rng: random.Random, model: ShopModel) -> dict[str, Any]:
    return {
        "order_id": f"SIM{index:06d}",
        "customer": {"name": f"Customer {index}", "phone": f"+9198{index:08d}", "locale": "en",
                     "channel": "whatsapp" if rng.random() < model.whatsapp_share else "sms"},
        "items": [{"sku": "TS-M", "name": "T-shirt", "qty": 1, "price": "499.00"}],
        "currency": "INR", "total": "499.00",
        "payment_method": "cod" if rng.random() < model.cod_share else "prepaid",
        "shipping_address": {"line1": f"{index % 90 + 1} MG Road", "line2": "Flat 2", "landmark": "",
                             "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
        "carrier": "Delhivery", "tracking_number": f"DL{index:08d}",
    }


class _Shop:
    """Runs the timeline: every action at its time, timers and the dispatcher ticking in between."""

    def __init__(self, service: Service, clock: FakeClock, model: ShopModel) -> None:
        from bot.delivery.dispatcher import Dispatcher

        self.service, self.clock, self.model = service, clock, model
        recorder = _Recorder()
        self.dispatcher = Dispatcher(service.db, service.settings, clock=clock, kinds=("message",),
                                     senders={f"message:{c}": recorder for c in ("sms", "whatsapp", "telegram", "console")})
        self.queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self.seq = 0
        self.last_tick: datetime | None = None

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, action))

    def tick(self) -> None:
        self.service.journeys.run_due_timers(limit=1000)
        while asyncio.run(self.dispatcher.run_once_and_close()):
            pass

    def run(self, until: datetime, progress: Callable[[], None]) -> None:
        while self.queue:
            when, _, action = heapq.heappop(self.queue)
            if self.last_tick is None or when - self.last_tick >= HOUR:
                self.clock.set(max(self.clock(), when))
                self.tick()
                self.last_tick = when
            self.clock.set(max(self.clock(), when))
            action()
            progress()
        self.clock.set(max(self.clock(), until))
        self.tick()

    # ---------------------------------------------------------------- what people do

    def event(self, order_id: str, kind: str) -> None:
        from bot.core.errors import Conflict
        from bot.core.schemas import OrderEventIn
        from bot.store.orders import get_order

        with self.service.db.session() as session:
            order = get_order(session=session, order_id=order_id)
            # A refused transition (e.g. news of a parcel the customer cancelled) is moot: nothing changes.
            with contextlib.suppress(Conflict):
                self.service.record_order_event(session, order, OrderEventIn(type=kind, at=self.clock()))

    def say(self, phone: str, channel: str, text: str) -> None:
        import uuid

        from bot.core.channels import InboundMessage

        self.service.handle_inbound(InboundMessage(channel=channel, text=text, phone=phone, received_at=self.clock(),
                                                   provider_message_id=f"SIM{uuid.uuid4().hex}"))

    def ask_for_a_person(self, phone: str, channel: str, rng: random.Random) -> None:
        from sqlmodel import select

        from bot.core.models import Customer, Escalation
        from bot.store import escalations

        self.say(phone, channel, "I want to talk to a person")
        with self.service.db.session() as session:
            escalation = session.exec(select(Escalation).join(Customer, Customer.id == Escalation.customer_id)  # type: ignore[arg-type]
                                      .where(Customer.phone == phone, Escalation.status == "open")).first()
        if escalation is None:
            return
        escalation_id = escalation.id or 0

        def reply() -> None:
            with self.service.db.session() as session:
                escalations.agent_reply(session=session, escalation_id=escalation_id, agent="simulated agent",
                                        text="Hello, I am looking into your order now.", now=self.clock())

        def resolve() -> None:
            with self.service.db.session() as session:
                self.service.resolve_escalation(session, escalation_id, agent="simulated agent")

        answered = self.clock() + timedelta(minutes=rng.uniform(3, 120))
        self.at(answered, reply)
        self.at(answered + 30 * timedelta(minutes=1), resolve)


def _plan_order(shop: _Shop, index: int, created: datetime, rng: random.Random) -> None:
    """The order's life: drawn now (so the draws do not depend on the order actions run in), acted out later."""
    from bot.core.schemas import OrderIn

    model = shop.model
    payload = _order_payload(index, rng, model)
    draws = [rng.random() for _ in range(10)]
    answered_after = timedelta(minutes=rng.uniform(20, 180))
    order_id, phone = payload["order_id"], payload["customer"]["phone"]
    channel = payload["customer"]["channel"]
    cod = payload["payment_method"] == "cod"

    def create() -> None:
        with shop.service.db.session() as session:
            saved = shop.service.save_order(session, OrderIn.model_validate(payload))
            treated = saved.order.holdout_group != "holdout"
        rates = model.rates(treated)
        if draws[0] < model.cancel:
            shop.at(created + 6 * HOUR, lambda: shop.event(order_id, "cancelled"))
            return
        if cod and treated and model.effect > 0 and draws[1] < model.cod_confirm:
            shop.at(created + answered_after, lambda: shop.say(phone, channel, "yes"))
        shop.at(created + DAY, lambda: shop.event(order_id, "shipped"))
        if draws[2] < rates["wismo"]:
            shop.at(created + 2 * DAY, lambda: shop.say(phone, channel, WISMO_TEXTS[index % len(WISMO_TEXTS)]))
            if draws[3] < model.wismo_again:
                shop.at(created + 4 * DAY, lambda: shop.say(phone, channel, "where is my order? still nothing"))
        if draws[4] < model.human:
            shop.at(created + 2 * DAY + 3 * HOUR, lambda: shop.ask_for_a_person(phone, channel, rng))
        out = created + 3 * DAY
        shop.at(out, lambda: shop.event(order_id, "out_for_delivery"))
        if draws[5] < model.failed:
            shop.at(out + 6 * HOUR, lambda: shop.event(order_id, "failed_attempt"))
            if draws[6] < rates["recover"]:
                shop.at(out + DAY, lambda: shop.event(order_id, "out_for_delivery"))
                shop.at(out + DAY + 5 * HOUR, lambda: shop.event(order_id, "delivered"))
            else:
                shop.at(out + 3 * DAY, lambda: shop.event(order_id, "returned"))
        elif cod and draws[7] < rates["rto"]:
            shop.at(out + 6 * HOUR, lambda: shop.event(order_id, "returned"))
        else:
            shop.at(out + 5 * HOUR, lambda: shop.event(order_id, "delivered"))

    shop.at(created, create)


def run_simulation(service: Service, clock: FakeClock, model: ShopModel,
                   progress: Callable[[], None] = lambda: None) -> Outcome:
    """Act out `model` on `service` (created with `model.shop_overrides()` and the fake `clock`, set to the
    first Monday) and return the truth."""
    rng = random.Random(model.seed)
    start = clock()
    shop = _Shop(service, clock, model)
    span = (model.weeks * 7 * DAY).total_seconds()
    for index in range(model.orders):
        # Orders come in during the shop's day (09:00-21:00 in India: 03:30-15:30 UTC).
        day = timedelta(seconds=rng.uniform(0, span)) // DAY
        created = start + day * DAY + timedelta(hours=3.5) + timedelta(seconds=rng.uniform(0, 12 * 3600))
        _plan_order(shop, index, created, rng)
    end = start + model.weeks * 7 * DAY + 10 * DAY
    shop.run(end, progress)
    return Outcome(database=service.db.engine.url.render_as_string(hide_password=True), start=start, end=end,
                   orders=model.orders, truth=model.truth())


# ---------------------------------------------------------------- the command


def register(app: typer.Typer) -> None:
    app.command("simulate-shop")(simulate_shop)


def simulate_shop(
    database: Annotated[str, typer.Option(help="Where to write the shop (an empty database), e.g. "
                                                "sqlite:///simulated.db. Default: DATABASE_URL.")] = "",
    orders: Annotated[int, typer.Option(min=20, max=200_000, help="How many orders.")] = 1000,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Over how many weeks they come in.")] = 4,
    effect: Annotated[float, typer.Option(min=0.0, max=0.95, help="The true effect: the share of WISMO contacts, "
                                                                  "COD refusals and lost failed deliveries that "
                                                                  "messaging prevents (0 = none).")] = 0.4,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.5, help="The global holdout share.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same shop.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the truth as JSON.")] = False,
) -> None:
    """Generate a synthetic shop with a known true effect of messaging, to check `doorstep report` against.

    Everything goes through the real service on a fake clock ending 10 days after the last order,
    weeks before today, so the report can compare every week. The truth it prints is what a perfect
    report would find (treatment minus holdout).
    """
    import sqlalchemy as sa
    from rich.console import Console
    from rich.progress import Progress

    from bot.core.clock import FakeClock
    from bot.core.runtime import Runtime
    from bot.core.settings import get_settings
    from bot.reports.outcomes import week_start
    from bot.service import Service

    settings = simulation_settings(get_settings(), database)
    model = ShopModel(orders=orders, weeks=weeks, effect=effect, holdout_share=holdout, seed=seed)
    real_now = Runtime(timezone=settings.timezone).now()  # the service's clock will be a fake one
    clock = FakeClock(week_start((real_now - (weeks + 4) * 7 * DAY).date()))
    service = Service.create(settings, clock=clock, shop_overrides=model.shop_overrides())
    with service.db.read() as session:
        if session.execute(sa.text("SELECT 1 FROM orders LIMIT 1")).first():
            Console(stderr=True).print("[red]The database already has orders.[/red] simulate-shop writes into an "
                                       "empty database only: give --database sqlite:///simulated.db")
            raise typer.Exit(1)
    service.load_model()
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("Simulating the shop", total=None)
        outcome = run_simulation(service, clock, model, progress=lambda: bar.advance(task))
    service.db.dispose()
    result: dict[str, Any] = {"database": outcome.database, "first_order_week": outcome.start.date().isoformat(),
              "simulation_ended": outcome.end.isoformat(), "model": asdict(model),
              "true_difference": {k: round(v, 3) for k, v in outcome.truth.items()}}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(f"[green]Simulated {orders} orders[/green] over {weeks} weeks from {result['first_order_week']} "
                  f"into {outcome.database}.")
    console.print("True difference (treatment minus holdout):")
    for key, value in result["true_difference"].items():
        console.print(f"  {key:<26} {value:+.2f}", highlight=False)
    console.print("Now compare: [bold]doorstep report[/bold] (with DATABASE_URL pointing at that database).")
