"""`doorstep report`: the outcome report in the terminal (rich tables) or as JSON. Registered by bot.cli.app.

It only reads the database (one read-only transaction).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.command()(report)
    from bot.cli import shop_sim

    shop_sim.register(app)


def _since(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (write it like 2026-11-02)", param_hint="--since") from None


def report(
    since: Annotated[str | None, typer.Option(help="First week (YYYY-MM-DD; moved back to its Monday). "
                                                   "Default: the first order in an experiment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """What Doorstep changed: the shop's KPIs, treatment against holdout, with 95 % confidence intervals."""
    from bot.reports.outcomes import build_report
    from bot.service import Service

    first = _since(since)
    service = Service.create()
    with service.db.read() as session:
        data = build_report(session, config=service.runtime.shop_config, now=service.now(), since=first)
    service.db.dispose()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    print_report(data)


def print_report(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from bot.reports.outcomes import describe_interval, describe_sample, format_value

    console = Console()
    currency = str(data["currency"])
    compared = data["compared_weeks"]
    console.print(f"[bold]Outcomes[/bold] {data['since']} – {data['until']} (weeks from Monday, UTC). "
                  f"Compared: {len(compared)} week(s) that ended at least {data['maturity_days']} days ago"
                  + (f", {compared[0]} to {compared[-1]}." if compared else ": none yet."))
    if data["weeks_left_out"]:
        console.print(f"[yellow]--since leaves out the experiment's first {data['weeks_left_out']} week(s): "
                      "quote the report without --since.[/yellow]")
    if data["orders_outside_experiments"]:
        console.print(f"[dim]{data['orders_outside_experiments']:,} orders were created while no holdout ran; "
                      "they are left out.[/dim]")
    for experiment in data["experiments"]:
        journey = experiment["journey"]
        orders = experiment["orders"]
        title = ("Global holdout: no proactive message at all" if journey is None
                 else f"Journey holdout: {journey}")
        table = Table(title=f"{title} — {orders['treatment']:,} treatment / {orders['holdout']:,} holdout orders",
                      title_justify="left", show_lines=False)
        for column in ("KPI", "treatment", "holdout", "difference [95 % CI]", "verdict", "sample"):
            table.add_column(column, overflow="fold")
        for row in experiment["kpis"]:
            verdict = row["verdict"]
            colour = {"better with Doorstep": "green", "worse with Doorstep": "red"}.get(verdict, "")
            table.add_row(row["label"], format_value(row, row["treatment"], currency=currency),
                          format_value(row, row["holdout"], currency=currency),
                          describe_interval(row, currency=currency),
                          f"[{colour}]{verdict}[/{colour}]" if colour else verdict, describe_sample(row))
        console.print(table)
    rates = data["reply_rates"]
    for by in ("channel", "journey"):
        rows = rates[f"by_{by}"]
        if not rows:
            continue
        table = Table(title=f"Reply rate per {by} (customer wrote within a day of a proactive message)",
                      title_justify="left")
        for column in (by, "sent", "replied", "rate [95 % CI]"):
            table.add_column(column)
        for row in rows:
            table.add_row(row[by], f"{row['sent']:,}", f"{row['replied']:,}",
                          f"{row['rate'] * 100:.1f} % [{row['ci_low'] * 100:.1f}, {row['ci_high'] * 100:.1f}]")
        console.print(table)
    console.print("[dim]Difference = treatment minus holdout. 'Better/worse' only when it stays significant after "
                  "correcting for the number of KPIs (Holm); README: How to read the outcome report.[/dim]")
    console.print(f"[dim]Generated {datetime.fromisoformat(data['generated_at']):%Y-%m-%d %H:%M} UTC.[/dim]")
