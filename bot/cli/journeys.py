"""CLI commands for proactive journeys: `simulate`, `erase` and `config check`.

`simulate` never touches the real database's outbox and never sends: it
replays the order in a throw-away SQLite database on a fake clock, with a
recording sender in place of the providers. Registered by bot.cli.app.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bot.service import Service

config_app = typer.Typer(help="Shop configuration (doorstep.yaml).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.command()(simulate)
    app.command()(erase)
    app.add_typer(config_app, name="config")


# ---------------------------------------------------------------- simulate


class _Recorder:
    """Accepts every message, like a provider that never fails."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.sent: dict[int, datetime] = {}

    async def send(self, message: Any) -> Any:
        from bot.core.channels import Receipt

        self.sent[message.message_id] = self.clock()
        return Receipt(provider_id=f"sim-{message.message_id}")


def _timeline_from_db(service: Service, order_id: str) -> tuple[dict[str, Any], datetime, list[dict[str, Any]]]:
    from sqlmodel import col, select

    from bot.core.errors import NotFound
    from bot.core.models import Customer, OrderEvent
    from bot.store.orders import get_order, order_public

    with service.db.session() as session:
        try:
            order = get_order(session=session, order_id=order_id)
        except NotFound:
            raise typer.BadParameter(f"no order {order_id!r} in the database", param_hint="ORDER_ID") from None
        customer = session.get(Customer, order.customer_id)
        if customer is None or customer.erased_at is not None:
            raise typer.BadParameter(f"order {order_id!r} belongs to an erased customer", param_hint="ORDER_ID")
        public = order_public(order, customer).model_dump(mode="json")
        events = [{"type": e.type, "at": e.at, **({"eta": e.eta.isoformat()} if e.eta else {}), "note": e.note}
                  for e in session.exec(select(OrderEvent).where(OrderEvent.order_pk == order.id, OrderEvent.source != "bot")
                                        .order_by(col(OrderEvent.at), col(OrderEvent.id)))]
        payload = {k: public[k] for k in ("order_id", "customer", "items", "currency", "total", "payment_method",
                                          "shipping_address", "promised_date", "carrier", "tracking_number",
                                          "tracking_url")}
        return payload, order.created_at, events


def _timeline_from_file(path: Path, now: datetime) -> tuple[dict[str, Any], datetime, list[dict[str, Any]]]:
    """YAML: `order:` (the API's order JSON), `start:` (ISO, default now), `events:` with
    `type` and `after` (a duration from the previous event, e.g. 2h) or `at` (ISO).
    `now` is the default start."""
    import yaml

    from bot.core.shopconfig import parse_duration

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--timeline") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("order"), dict):
        raise typer.BadParameter(f"{path}: needs an `order:` mapping (the API's order JSON)", param_hint="--timeline")
    start = _aware(spec.get("start")) or now.replace(microsecond=0)
    at = start
    events: list[dict[str, Any]] = []
    for raw in spec.get("events") or []:
        item = dict(raw)
        try:
            at = _aware(item.pop("at", None)) or at + parse_duration(item.pop("after", "0m"))
        except ValueError as exc:
            raise typer.BadParameter(f"{path}: {exc}", param_hint="--timeline") from None
        events.append({**item, "at": at})
    return spec["order"], start, events


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def simulate(
    order_id: Annotated[str | None, typer.Argument(help="An order in the database to replay.")] = None,
    timeline: Annotated[Path | None, typer.Option(help="Replay a YAML timeline instead (order + events).")] = None,
    days: Annotated[int, typer.Option(help="Keep the clock running this many days after the last event.")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    templates_approved: Annotated[bool, typer.Option(
        "--templates-approved", help="Price WhatsApp messages outside the 24-hour window as if Doorstep's "
                                     "templates were approved (a replay from the database uses their real state).")] = False,
) -> None:
    """Replay an order's timeline on a fake clock and print what would be sent, when, and what it costs.

    Nothing is sent and the real database is not changed: the replay runs in a
    throw-away SQLite database with the shop's doorstep.yaml and quiet hours. Each
    message carries the send planner's channel, form and price; the totals per
    journey and per order are printed at the end.
    """
    import asyncio
    import tempfile
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.table import Table
    from sqlmodel import col, select

    from bot.core import whatsapp_templates
    from bot.core.clock import FakeClock
    from bot.core.errors import Conflict
    from bot.core.models import Customer, JourneyTimer, Message, Outbox
    from bot.core.runtime import Runtime
    from bot.core.schemas import OrderEventIn, OrderIn
    from bot.core.settings import get_settings
    from bot.delivery.dispatcher import Dispatcher
    from bot.service import Service
    from bot.store import content
    from bot.store.content import Synced
    from bot.store.orders import get_order

    if (order_id is None) == (timeline is None):
        raise typer.BadParameter("give an ORDER_ID or --timeline FILE (one of them)")
    settings = get_settings()
    synced: list[Synced] = []
    if timeline is not None:
        payload, start, events = _timeline_from_file(timeline, Runtime(timezone=settings.timezone).now())
    else:
        real = Service.create(settings)
        payload, start, events = _timeline_from_db(real, order_id or "")
        with real.db.read() as session:  # the templates as synced: approved or not, and their categories
            synced = [Synced(r.name, r.content_sid, r.definition_hash, r.category, r.requested_category,
                             r.approval_status) for r in content.all_rows(session)]
    if templates_approved:
        synced = [Synced(name, "HX" + "0" * 32, "simulated", template.category, template.category, content.APPROVED)
                  for name, (template, _locale) in whatsapp_templates.by_content_name().items()]
    try:
        order_in = OrderIn.model_validate(payload)
    except Exception as exc:
        raise typer.BadParameter(f"the order is not valid: {exc}") from None

    with tempfile.TemporaryDirectory(prefix="doorstep-simulate-") as tmp:
        clock = FakeClock(start)
        sim_settings = settings.model_copy(update={"database_url": f"sqlite:///{Path(tmp) / 'simulate.db'}"})
        service = Service.create(sim_settings, clock=clock)
        with service.db.session() as session:
            content.save(session, synced)
        recorder = _Recorder(clock)
        senders = {f"message:{c}": recorder for c in ("sms", "whatsapp", "telegram", "console", "email", "viber", "voice")}
        dispatcher = Dispatcher(service.db, sim_settings, clock=clock, senders=senders, kinds=("message",))  # type: ignore[arg-type]

        def next_due() -> datetime | None:
            with service.db.session() as session:
                row = session.exec(select(Outbox.due_at).where(Outbox.status == "pending", Outbox.kind == "message")
                                   .order_by(col(Outbox.due_at)).limit(1)).first()
                timer = session.exec(select(JourneyTimer.due_at).where(JourneyTimer.status == "pending")
                                     .order_by(col(JourneyTimer.due_at)).limit(1)).first()
            found = [t for t in (row, timer) if t is not None]
            return min(found) if found else None

        def run_until(when: datetime) -> None:
            while True:
                service.journeys.run_due_timers()
                while asyncio.run(dispatcher.run_once_and_close()):
                    pass
                upcoming = next_due()
                if upcoming is None or upcoming > when:
                    clock.set(max(clock(), when))
                    return
                clock.set(max(clock(), upcoming))

        with service.db.session() as session:
            service.save_order(session, order_in)
        for item in events:
            run_until(item["at"])
            clock.set(max(clock(), item["at"]))
            event_in = OrderEventIn.model_validate({k: v for k, v in item.items() if k in {"type", "at", "eta", "note"}})
            with service.db.session() as session:
                order = get_order(session=session, order_id=order_in.order_id)
                try:
                    service.record_order_event(session, order, event_in)
                except Conflict as exc:  # an impossible transition: show it, keep going
                    Console(stderr=True).print(f"[yellow]skipped {item['type']}:[/yellow] {exc}")
                    continue
        run_until((events[-1]["at"] if events else start) + timedelta(days=days))

        with service.db.session() as session:
            customer = session.exec(select(Customer)).first()
            tz = ZoneInfo((customer.timezone if customer else None) or sim_settings.timezone)
            rows: list[dict[str, Any]] = []
            for message in session.exec(select(Message).where(Message.direction == "out").order_by(col(Message.id))):
                sent_at = recorder.sent.get(message.id or 0)
                plan = message.plan or {}
                sent = message.status in {"sent", "delivered", "read", "queued"} and sent_at is not None
                rows.append({"journey": (message.template or "").removeprefix("journey."), "channel": message.channel,
                             "status": message.status, "due_at": message.due_at.isoformat() if message.due_at else None,
                             "sent_at": sent_at.isoformat() if sent_at else None, "error": message.error,
                             "text": message.text, "form": plan.get("form"),
                             "cost": float(plan.get("price") or 0.0) if sent else 0.0,
                             "plan_reason": plan.get("reason"), "_when": sent_at or message.due_at})
            timers: list[dict[str, Any]] = [{"kind": t.kind, "due_at": t.due_at.isoformat(), "status": t.status, "outcome": t.outcome}
                      for t in session.exec(select(JourneyTimer).order_by(col(JourneyTimer.due_at)))]
        service.db.dispose()

    rows.sort(key=lambda r: (r["_when"] is None, r["_when"] or start))
    currency = str(service.runtime.shop_config["messaging"]["pricing"].get("currency", "USD"))
    per_journey: dict[str, float] = {}
    for row in rows:
        per_journey[row["journey"] or "reply"] = per_journey.get(row["journey"] or "reply", 0.0) + row["cost"]
    cost: dict[str, Any] = {"currency": currency, "total": round(sum(per_journey.values()), 5),
            "per_journey": {k: round(v, 5) for k, v in per_journey.items()}}
    if as_json:
        typer.echo(json.dumps({"order_id": order_in.order_id, "timezone": str(tz), "events": [
            {"type": e["type"], "at": e["at"].isoformat()} for e in events],
            "messages": [{k: v for k, v in r.items() if k != "_when"} for r in rows], "timers": timers,
            "cost": cost}, indent=2))
        return
    table = Table(title=f"Simulated journey of {order_in.order_id} (times in {tz})", show_lines=True)
    for column in ("when", "journey", "channel", "status", f"cost ({currency})", "text"):
        table.add_column(column, overflow="fold")
    for row in rows:
        when = row["_when"].astimezone(tz).strftime("%a %d %b %H:%M") if row["_when"] else ""
        status = row["status"] + (f"\n{row['error']}" if row["error"] else "")
        channel = row["channel"] + (f" ({row['form']})" if row["form"] == "template" else "")
        table.add_row(when, row["journey"], channel, status, f"{row['cost']:.4f}", row["text"])
    console = Console()
    console.print(table)
    console.print("cost per journey: " + ", ".join(f"{k} {v:.4f}" for k, v in per_journey.items())
                  + f"; this order in all: {cost['total']:.4f} {currency}")
    for timer in timers:
        console.print(f"[dim]timer {timer['kind']} at {datetime.fromisoformat(timer['due_at']).astimezone(tz):%a %d %b %H:%M}: "
                      f"{timer['status']} ({timer['outcome'] or ''})[/dim]")


# ---------------------------------------------------------------- erase


def erase(
    phone: Annotated[str, typer.Argument(help="The customer's phone number (E.164, e.g. +919812345678).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a customer's personal data (GDPR Art. 17); keeps only a salted hash of the number."""
    from bot.core.phones import InvalidPhone, mask, to_e164
    from bot.service import Service
    from bot.store.erasure import erase_customer

    service = Service.create()
    try:
        e164 = to_e164(phone, service.settings.default_country)
    except InvalidPhone as exc:
        typer.echo(f"Invalid phone: {exc}", err=True)
        raise typer.Exit(2) from None
    if not yes:
        typer.confirm(f"Erase everything about {mask(e164)}? This cannot be undone", abort=True)
    with service.db.session() as session:
        report = erase_customer(session=session, phone=e164, now=service.now())
    if not report.found:
        typer.echo(f"No customer with {mask(e164)}.", err=True)
        raise typer.Exit(1)
    if report.already_erased:
        typer.echo(f"{mask(e164)} was already erased; nothing left to remove.")
        return
    typer.echo(f"Erased {mask(e164)}: {report.orders} orders, {report.messages} messages, "
               f"{report.cancelled} pending messages cancelled.")


# ---------------------------------------------------------------- config check


@config_app.command("check")
def config_check(
    path: Annotated[Path | None, typer.Argument(help="The file to check (default: DOORSTEP_CONFIG, doorstep.yaml).")] = None,
) -> None:
    """Validate doorstep.yaml and the operator URLs; errors name the file and line, or the setting."""
    from rich.console import Console

    from bot.core.settings import get_settings
    from bot.core.shopconfig import ConfigError, load_shop_config, parse_quiet_hours

    settings = get_settings()
    target = path or Path(settings.config_path)
    console = Console()
    if not target.exists():
        if path is not None:
            console.print(f"[red]{target}: no such file[/red]")
            raise typer.Exit(1)
        console.print(f"{target} not found: the defaults apply (see doorstep.example.yaml).")
    try:
        config = load_shop_config(target)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]{line}[/red]", markup=True, highlight=False)
        raise typer.Exit(1) from None
    quiet = settings.quiet_hours if settings.quiet_hours is not None else config["contact_policy"]["quiet_hours"]
    parsed = parse_quiet_hours(quiet)
    source = "DOORSTEP_QUIET_HOURS" if settings.quiet_hours is not None else "doorstep.yaml"
    console.print(f"[green]{target}: OK[/green]" if target.exists() else "[green]defaults: OK[/green]")
    console.print(f"quiet hours: {quiet if parsed else 'off'} ({source}); caps: "
                  + ", ".join(f"{k}={v}" for k, v in config["contact_policy"]["caps"].items()))
    for name, spec in config["journeys"].items():
        state = "on " if spec.get("enabled") else "off"
        console.print(f"  {state} {name:<17} delay {spec.get('delay', '0m'):<4} valid {spec.get('valid_for', '-'):<4} "
                      f"{spec.get('priority', '')} via {spec.get('channel', 'preferred')}", highlight=False)
    _check_urls(console, settings)


def _check_urls(console: Any, settings: Any) -> None:
    """Each operator URL that is set, vetted as the senders vet it; a refused one fails the check."""
    from bot.core.urlguard import check_operator_urls

    checks = check_operator_urls(settings)
    for check in checks:
        if check.ok:
            console.print(f"[green]{check.setting}: OK[/green]", highlight=False)
        else:
            colour = "red" if check.fatal else "yellow"
            console.print(f"[{colour}]{check.setting}: {check.problem}[/{colour}]", highlight=False)
    if any(c.fatal for c in checks):
        raise typer.Exit(1)
