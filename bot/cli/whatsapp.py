"""`doorstep whatsapp …` and `doorstep consent …`: WhatsApp Content templates, and the consent ledger's export.

`sync-templates` creates the Content templates Doorstep sends (buttons and lists inside the 24-hour window;
outside it, one approved template per proactive message kind and locale, data/whatsapp_templates.yml) with Twilio's Content API, requests their WhatsApp approval once, and records
each one's SID, approval status and current category; safe to run again (a cron job keeps categories
WhatsApp changed up to date). Never prints tokens or phone numbers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.service import Service

whatsapp_app = typer.Typer(help="WhatsApp: Content templates (buttons, lists, templates outside the 24 h window).",
                           no_args_is_help=True)
consent_app = typer.Typer(help="The consent ledger: every opt-in and opt-out, with source and time.",
                          no_args_is_help=True)


def _service() -> Service:
    from bot.service import Service

    return Service.create()


@whatsapp_app.command("sync-templates")
def sync_templates(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Create or keep the Content templates, request approvals, record statuses and categories (idempotent)."""
    import asyncio

    from bot.core.errors import DeliveryError
    from bot.store import content
    from bot.wiring import sync_whatsapp_content

    service = _service()
    try:
        report = asyncio.run(sync_whatsapp_content(service.settings))
    except DeliveryError as exc:
        typer.echo(f"sync failed: {exc}", err=True)
        raise typer.Exit(1) from None
    with service.db.session() as session:
        content.save(session, report.synced)
    from bot.core.whatsapp_templates import by_content_name

    journeys = by_content_name()  # name -> (the message kind's template, locale)
    rows = [{"name": s.name, "kind": journeys[s.name][0].kind if s.name in journeys else None,
             "locale": journeys[s.name][1] if s.name in journeys else None, "content_sid": s.content_sid,
             "status": s.approval_status, "category": s.category, "requested_category": s.requested_category,
             "rejection_reason": s.rejection_reason}
            for s in report.synced]
    if as_json:
        typer.echo(json.dumps({"created": report.created, "kept": report.kept, "submitted": report.submitted,
                               "templates": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("template", "for", "Content SID", "approval", "category")
    for row in rows:
        changed = row["category"] and row["requested_category"] and row["category"] != row["requested_category"]
        category = f"{row['category']} (asked {row['requested_category']})" if changed else (row["category"] or "-")
        used_for = f"{row['kind']} ({row['locale']})" if row["kind"] else "choices inside the window"
        table.add_row(str(row["name"]), used_for, str(row["content_sid"]), str(row["status"]), str(category))
    Console().print(table)
    typer.echo(f"created {len(report.created)}, kept {len(report.kept)}, approval requested {len(report.submitted)}")


@consent_app.command("export")
def export(phone: Annotated[str, typer.Option(help="The customer's phone number (E.164).")]) -> None:
    """Print one customer's consent history as JSON (oldest first)."""
    from sqlmodel import select

    from bot.core.models import Customer
    from bot.core.phones import InvalidPhone, to_e164
    from bot.store import consent

    service = _service()
    try:
        e164 = to_e164(phone, service.settings.default_country)
    except InvalidPhone as exc:
        typer.echo(f"--phone: {exc}", err=True)
        raise typer.Exit(2) from None
    with service.db.read() as session:
        customer = session.exec(select(Customer).where(Customer.phone == e164)).first()
        if customer is None:
            typer.echo("no customer with this phone number", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps({"customer_id": customer.id, "opted_out_channels": customer.opted_out_channels,
                               "email_status": customer.email_status,
                               "events": consent.history(session, customer.id or 0)}))


def register(app: typer.Typer) -> None:
    app.add_typer(whatsapp_app, name="whatsapp")
    app.add_typer(consent_app, name="consent")
