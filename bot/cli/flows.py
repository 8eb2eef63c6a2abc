"""CLI commands for the conversation flows: `doorstep test-conversations PATH`.

Runs a shop's own YAML conversation files (format:
docs/conversations.md) through the real pipeline on throw-away databases and prints a rich
report. Never touches the configured database unless `--database-url` says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.command("test-conversations")(test_conversations)


def test_conversations(
    path: Annotated[Path, typer.Argument(help="A conversation file, or a folder of *.yml files.")],
    database_url: Annotated[str | None, typer.Option(
        help="Run on this (empty, throw-away) database instead of a temporary SQLite file per conversation. "
             "Every table is wiped before each file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every turn, not only failing files.")] = False,
) -> None:
    """Run YAML conversation tests (customer turns, expected intent, reply pattern, order fields, events)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from bot.cli.convtest import (
        ConversationFileError,
        ConversationOutcome,
        discover,
        load_file,
        run_conversation,
    )

    console = Console()
    if not path.exists():
        console.print(f"[red]No such file or folder:[/red] {path}")
        raise typer.Exit(2)
    files = discover(path)
    if not files:
        console.print(f"[yellow]No *.yml conversation files under[/yellow] {path}")
        raise typer.Exit(2)
    outcomes: list[ConversationOutcome] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("conversations", total=len(files))
        for file in files:
            progress.update(task, description=file.name)
            try:
                spec = load_file(file)
                if database_url:
                    _wipe(database_url)
                    outcome = run_conversation(file, database_url, spec=spec)
                else:
                    with tempfile.TemporaryDirectory(prefix="doorstep-conv-") as tmp:
                        outcome = run_conversation(file, f"sqlite:///{Path(tmp) / 'conversation.db'}", spec=spec)
            except ConversationFileError as exc:
                outcome = ConversationOutcome(path=str(file), description="", error=str(exc))
            outcomes.append(outcome)
            progress.advance(task)

    for outcome in outcomes:
        if outcome.passed and not verbose:
            continue
        if not outcome.turns:
            console.print(f"[red]{Path(outcome.path).name}:[/red] {outcome.error}", highlight=False)
            continue
        colour = "green" if outcome.passed else "red"
        table = Table(title=f"[{colour}]{Path(outcome.path).name}[/{colour}] {outcome.description}", show_lines=True,
                      title_justify="left", expand=True)
        table.add_column("customer", ratio=2)
        table.add_column("intent", ratio=1)
        table.add_column("bot", ratio=4)
        table.add_column("problems", ratio=3, style="red")
        for turn in outcome.turns:
            table.add_row(turn.say, turn.intent or "", "\n".join(turn.replies), "\n".join(turn.problems))
        console.print(table)
        if outcome.error:
            console.print(f"[red]error:[/red] {outcome.error}")

    summary = Table(title="Conversation tests", title_justify="left")
    summary.add_column("file")
    summary.add_column("turns", justify="right")
    summary.add_column("result")
    for outcome in outcomes:
        summary.add_row(Path(outcome.path).name, str(len(outcome.turns)),
                        "[green]pass[/green]" if outcome.passed else "[red]FAIL[/red]")
    console.print(summary)
    failed = [o for o in outcomes if not o.passed]
    console.print(f"[bold]{len(outcomes) - len(failed)} passed, {len(failed)} failed[/bold]")
    if failed:
        raise typer.Exit(1)


def _wipe(database_url: str) -> None:
    """Empty every table (after migrating), so each file starts from nothing."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    import bot.core.models  # noqa: F401 - registers the tables
    from bot.core.db import Database

    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.begin() as conn:
            for table in reversed(SQLModel.metadata.sorted_tables):
                conn.execute(sa.delete(table))
    finally:
        db.dispose()
