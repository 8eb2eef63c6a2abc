"""`doorstep events …`: the logistics feed and its webhook deliveries from the shell.

Reads the same feed as `GET /api/events`; `redeliver` and `enable` only
re-queue or re-enable delivery, they never change an event.
"""

from __future__ import annotations

from typing import Annotated

import typer

events_app = typer.Typer(help="Logistics events: the feed, failed webhook deliveries, redelivery.",
                         no_args_is_help=True)


@events_app.command("list")
def list_events(
    failed: Annotated[bool, typer.Option("--failed", help="Only events whose webhook failed or was dead-lettered.")] = False,
    after: Annotated[int, typer.Option(help="Start after this cursor.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List logistics events, oldest first, with their webhook delivery status."""
    from rich.console import Console
    from rich.table import Table

    from bot.service import Service
    from bot.store.feed import assign_cursors, read_feed
    from bot.web.routes.events import feed_item

    service = Service.create()
    assign_cursors(service.db)
    with service.db.session() as session:
        rows, has_more = read_feed(session, after=after, limit=limit, failed_only=failed)
        items = [feed_item(event, row) for event, row in rows]
    if as_json:
        for item in items:
            typer.echo(item.model_dump_json())
        return
    table = Table(title="Failed logistics webhooks" if failed else "Logistics events")
    for column in ("cursor", "id", "type", "order", "created", "delivery", "tries", "last error"):
        table.add_column(column)
    for item in items:
        table.add_row(item.cursor, item.id, item.type, str(item.data.get("order_id") or ""), item.created_at[:19],
                      item.delivery.status, str(item.delivery.attempts), (item.delivery.last_error or "")[:60])
    console = Console()
    console.print(table)
    if not items:
        console.print("No failed deliveries." if failed else "No events.")
    if has_more:
        console.print(f"More: doorstep events list --after {items[-1].cursor}")


@events_app.command("redeliver")
def redeliver(event_id: Annotated[str, typer.Argument(help="The event id (evt_…), as shown by `events list`.")]) -> None:
    """Send one event's webhook again (same webhook-id, fresh retry schedule)."""
    from bot.service import Service
    from bot.store.feed import redeliver as requeue_event

    service = Service.create()
    event, row = requeue_event(service.db, event_id)
    if event is None:
        typer.secho(f"No event {event_id!r}.", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{event.id} queued for redelivery; the running dispatcher (serve/worker) sends it within a second.")


@events_app.command("enable")
def enable_endpoint() -> None:
    """Re-enable LOGISTICS_WEBHOOK_URL after it answered 410 Gone (then redeliver what failed)."""
    from bot.service import Service
    from bot.store.feed import endpoint_disabled, set_endpoint_disabled

    service = Service.create()
    url = service.settings.logistics.webhook_url
    if not url:
        typer.secho("LOGISTICS_WEBHOOK_URL is not set.", fg="red", err=True)
        raise typer.Exit(1)
    with service.db.session() as session:
        was = endpoint_disabled(session, url)
        set_endpoint_disabled(session, url, False)
    typer.echo("Endpoint re-enabled." if was else "Endpoint was not disabled.")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.add_typer(events_app, name="events")
