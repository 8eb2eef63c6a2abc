"""Running Doorstep, and trying it out: `serve` (everything in one process), `worker`
(dispatcher and scheduler only), `demo` (load the demo customers and orders) and `chat`
(talk to the bot as a customer on the console channel). Registered by bot.cli.app.

Heavy imports (uvicorn, the app, rich) happen inside the commands, so `doorstep --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.startup import load_service, refuse_unsafe_urls, setup_logging

if TYPE_CHECKING:
    from bot.service import Service


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app (in the order `doorstep --help` lists them)."""
    app.command()(serve)
    app.command()(worker)
    app.command()(demo)
    app.command()(chat)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; use 0.0.0.0 in a container.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Load the demo orders when the database is empty.")] = False,
    workers: Annotated[bool, typer.Option("--workers/--no-workers", help="Run the dispatcher and scheduler in this process.")] = True,
) -> None:
    """Run the API, webhooks, agent inbox, dispatcher and scheduler in one process."""
    _refuse_busy_port(host, port)  # first: nothing (not even a new API key) is shown for a server that cannot start
    import uvicorn

    from bot.app import create_app
    from bot.cli.demo import database_is_empty, load_demo
    from bot.web.httplimits import guarded_protocol

    service = load_service()
    setup_logging(service.settings)
    refuse_unsafe_urls(service.settings)
    if demo and database_is_empty(service):
        ids = load_demo(service)
        typer.echo(f"Loaded {len(ids)} demo orders: {', '.join(ids)}")
    typer.echo(f"Doorstep on http://{host}:{port}  (docs: /docs, inbox: /inbox, database: {service.db.engine.dialect.name})")
    settings = service.settings
    # The webhooks' event loop shares the interpreter with the processing threads: a 1 ms switch interval
    # (default 5 ms) lets it take the GIL back sooner at each socket event, so acknowledgements do not
    # queue behind conversation work (measured in docs/benchmarks.md).
    import sys

    sys.setswitchinterval(0.001)
    # httptools with a deadline per request (slow senders are cut off), a short keep-alive and a bounded header
    # block; body sizes are limited inside the app (bot/web/httplimits.py).
    # log_config=None: uvicorn's records go through Doorstep's handler (one line, redacted), not uvicorn's own.
    uvicorn.run(create_app(service=service, workers=workers, freeze_heap=True), host=host, port=port, log_config=None,
                log_level="info" if settings.access_log else "warning", access_log=settings.access_log,
                http=guarded_protocol(settings.request_timeout_seconds),
                timeout_keep_alive=settings.keep_alive_seconds)


def _refuse_busy_port(host: str, port: int) -> None:
    """Exit with a clear message when host:port cannot be bound (another server holds it)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.secho(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Is another Doorstep (or another "
                        f"program) running there? Stop it, or choose another port: doorstep serve --port {port + 1} "
                        f"(with make: make run PORT={port + 1}).", fg="red", err=True)
            raise typer.Exit(1) from None


def worker() -> None:
    """Run only the dispatcher and scheduler (scale-out; several may share one PostgreSQL)."""
    import asyncio
    import signal

    from bot.app import freeze_startup_heap
    from bot.workers import start_workers

    service = load_service()
    setup_logging(service.settings)
    refuse_unsafe_urls(service.settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.to_thread(service.load_model)  # before any message is processed, outside a transaction
        freeze_startup_heap()
        tasks = await start_workers(service, stop)
        typer.echo("Doorstep worker running; Ctrl-C to stop.")
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def demo(
    reset: Annotated[bool, typer.Option("--reset", help="Delete the demo customers and everything of theirs "
                                                          "(orders, conversations, messages), then load them fresh.")] = False,
) -> None:
    """Load the demo customers and orders (safe to run again: existing ones are refreshed, not duplicated)."""
    from rich.console import Console
    from rich.table import Table
    from sqlmodel import select

    from bot.cli.demo import load_demo_orders, reset_demo
    from bot.core.models import Customer, Order

    service = load_service()
    if reset:
        typer.echo(f"Deleted {reset_demo(service)} demo customers and their data.")
    loaded = load_demo_orders(service)
    outcomes = {d.order_id: d.outcome for d in loaded}
    table = Table(title="Demo orders", show_lines=False)
    for column in ("order", "customer", "phone", "status", "payment", "loaded"):
        table.add_column(column)
    labels = {"created": "new", "refreshed": "kept", "taken": "[red]taken[/red]"}
    with service.db.read() as session:
        ids = list(outcomes)
        for order in session.exec(select(Order).where(Order.order_id.in_(ids))).all():  # type: ignore[attr-defined]
            outcome = outcomes[order.order_id]
            # Never show who holds a taken id: it is not a demo customer.
            customer = session.get(Customer, order.customer_id) if outcome != "taken" else None
            table.add_row(order.order_id, customer.name if customer else "", (customer.phone or "") if customer else "",
                          order.status, order.payment_method, labels[outcome])
    Console(soft_wrap=True).print(table)
    if any(d.outcome == "taken" for d in loaded):
        typer.secho("A taken demo order id belongs to another customer (e.g. an erased demo customer); "
                    "`doorstep demo --reset` deletes the demo data and loads it fresh.", fg="yellow")
    elif any(d.outcome == "refreshed" for d in loaded):
        typer.echo("Kept orders were already loaded: they keep their state and conversations; `--reset` starts over.")
    typer.echo('Try: doorstep chat --phone +919812345678 --say "where is my order"')


def chat(
    phone: Annotated[str, typer.Option(help="The customer's phone number (E.164, e.g. +919812345678).")],
    say: Annotated[str | None, typer.Option(help="Send one message, print the reply, exit.")] = None,
) -> None:
    """Talk to the bot as a customer, through the full pipeline, on the `console` channel."""
    import asyncio
    import uuid

    from rich.console import Console

    from bot import wiring
    from bot.core.channels import InboundMessage
    from bot.core.phones import InvalidPhone, to_e164
    from bot.delivery.dispatcher import Dispatcher

    # soft_wrap: a reply is one line however narrow the terminal (or pipe, where rich assumes 80 columns).
    console = Console(soft_wrap=True)
    try:
        e164 = to_e164(phone)
    except InvalidPhone as exc:
        console.print(f"[red]Invalid --phone:[/red] {exc}. Use E.164, e.g. +919812345678.")
        raise typer.Exit(2) from None
    service = load_service()
    wiring.install()
    dispatcher = Dispatcher(service.db, service.settings, clock=service.runtime.clock, kinds=("message",))

    def send(text: str) -> list[str]:
        handled = service.handle_inbound(InboundMessage(channel="console", text=text, phone=e164,
                                                        provider_message_id=f"console-{uuid.uuid4()}"))
        # Deliver this conversation's console replies now, through the dispatcher like any channel.
        asyncio.run(dispatcher.run_once_and_close())
        return [m.text for m in handled.replies]

    if say is not None:
        replies = send(say)
        for text in replies:
            console.print(text, markup=False, highlight=False)
        if not replies:
            console.print(f"[dim](no reply: {_silence_reason(service, e164)})[/dim]")
        return
    console.print(f"[bold]Chatting as {e164}[/bold] on the console channel. Ctrl-D or /quit to leave.")
    while True:
        try:
            text = console.input("[cyan]you>[/cyan] ")
        except (EOFError, KeyboardInterrupt):
            break
        if text.strip() in {"/quit", "/exit"}:
            break
        if not text.strip():
            continue
        for reply in send(text):
            console.print("[green]bot>[/green] ", end="")
            console.print(reply, markup=False, highlight=False)


def _silence_reason(service: Service, phone: str) -> str:
    """Why `chat --say` printed no reply, in words the person at the terminal can act on."""
    from sqlmodel import select

    from bot.core.models import Conversation, Customer

    with service.db.session() as session:
        customer = session.exec(select(Customer).where(Customer.phone == phone)).first()
        conversation = None if customer is None else session.exec(
            select(Conversation).where(Conversation.customer_id == customer.id)).first()
        if conversation is not None and conversation.owner in {"waiting_human", "human"}:
            return "a human agent owns this conversation; their replies appear in the inbox"
        if customer is not None and "console" in customer.opted_out_channels:
            return "this customer opted out on this channel; send START to opt back in"
    return "nothing to say to that"
