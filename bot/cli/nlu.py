"""CLI commands for the NLU part: `doorstep classify` and `doorstep eval` (registered by bot.cli.app).

Heavy imports (the model, numpy, dateparser, rich tables) happen inside the
commands so `doorstep --help` stays fast. Progress and training notices go to
stderr; with `--json` stdout carries exactly one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from intents.evaluation import EvalReport


def _err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _load_model_with_status() -> None:
    """Load the model; on the first run after a data change, show that it is training (on stderr)."""
    from intents.classifier import get_model

    console = _err_console()
    status = None

    def progress(message: str) -> None:
        nonlocal status
        status = console.status(message)
        status.start()

    try:
        get_model(progress=progress)
    finally:
        if status is not None:
            status.stop()
            console.print("[green]Intent model trained and cached.[/green]")


def classify_command(
    text: Annotated[str, typer.Argument(help="The customer's message.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    expecting: Annotated[
        str,
        typer.Option(
            help="What the conversation waits for: nothing|yes_no|date|address_part|choice|number|free_text."
        ),
    ] = "nothing",
    choices: Annotated[str, typer.Option(help="Comma-separated menu items, with --expecting choice.")] = "",
    timezone: Annotated[
        str | None, typer.Option(help="Timezone for relative dates (default $DOORSTEP_TIMEZONE or UTC).")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="Freeze the clock: ISO-8601 datetime (default: now).")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="The customer's locale: en|es|hi-Latn.")] = None,
) -> None:
    """Classify one message: intent, confidence, entities, language."""
    from intents import Context, Expecting, classify

    try:
        expect = Expecting(expecting)
    except ValueError:
        valid = ", ".join(e.value for e in Expecting)
        raise typer.BadParameter(
            f"unknown value {expecting!r}; use one of: {valid}", param_hint="--expecting"
        ) from None
    tz = timezone or os.environ.get("DOORSTEP_TIMEZONE") or "UTC"
    frozen: datetime | None = None
    if now:
        try:
            frozen = datetime.fromisoformat(now)
        except ValueError:
            raise typer.BadParameter(f"not an ISO-8601 datetime: {now!r}", param_hint="--now") from None
    context = Context(
        expecting=expect,
        choices=tuple(c.strip() for c in choices.split(",") if c.strip()),
        now=frozen,
        timezone=tz,
        locale=locale,
    )
    _load_model_with_status()
    result = classify(text, context)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{result.intent.value}[/bold]  confidence {result.confidence:.2f}  "
        f"language {result.language}  source {result.source}"
    )
    if result.alternatives:
        console.print("alternatives: " + ", ".join(f"{i.value} {p:.2f}" for i, p in result.alternatives))
    if result.entities:
        table = Table("type", "value", "text")
        for entity in result.entities:
            table.add_row(entity.type, str(entity.value), entity.text)
        console.print(table)


_SHORT = {
    "wismo": "wism", "reschedule": "resc", "change_address": "addr", "cod_confirm": "cod",
    "cancel_order": "canc", "return_refund": "retn", "human": "hum", "opt_out": "opt",
    "greet": "grt", "thanks": "thx", "affirm": "yes", "deny": "no", "out_of_scope": "oos", "choice": "chc",
}  # fmt: skip


def _print_report(report: EvalReport, path: Path, worst: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{path.name}[/bold]: n={report.n}  accuracy={report.accuracy:.3f}  macro-F1={report.macro_f1:.3f}"
    )
    per = Table("intent", "precision", "recall", "f1", "support", title="Per intent")
    for label, m in report.per_intent.items():
        per.add_row(
            label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(int(m["support"]))
        )
    console.print(per)

    gold_labels = sorted({g for g, _ in report.confusion})
    predicted_labels = sorted({p for _, p in report.confusion})
    from rich import box

    confusion = Table(
        "gold",
        *[_SHORT.get(p, p[:4]) for p in predicted_labels],
        title="Confusion (rows: gold, columns: predicted)",
        caption=" ".join(
            f"{_SHORT.get(p, p[:4])}={p}" for p in sorted(set(predicted_labels) | set(gold_labels))
        ),
        box=box.SIMPLE,
        padding=(0, 1),
        collapse_padding=True,
    )
    for g in gold_labels:
        cells = []
        for p in predicted_labels:
            count = report.confusion.get((g, p), 0)
            cell = str(count) if count else "·"
            cells.append(f"[green]{cell}[/green]" if g == p and count else cell)
        confusion.add_row(_SHORT.get(g, g[:4]), *cells)
    console.print(confusion)

    if report.misses and worst > 0:
        misses = Table(
            "text",
            "gold",
            "predicted",
            "conf",
            title=f"Worst {min(worst, len(report.misses))} misclassified (most confident first)",
        )
        for miss in report.misses[:worst]:
            misses.add_row(miss.text.strip()[:80], miss.gold, miss.predicted, f"{miss.confidence:.2f}")
        console.print(misses)


def eval_command(
    file: Annotated[Path, typer.Argument(help="CSV with columns text,intent (extra columns are ignored).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {accuracy, macro_f1, n, per_intent} as JSON.")
    ] = False,
    worst: Annotated[int, typer.Option(help="How many misclassified examples to list.")] = 15,
) -> None:
    """Evaluate the classifier on a labelled CSV: accuracy, macro-F1, per-intent scores, confusions."""
    from intents import classify
    from intents.data import load_eval_csv
    from intents.evaluation import evaluate

    if not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    try:
        rows = load_eval_csv(file)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not rows:
        typer.echo(f"error: {file} has no rows", err=True)
        raise typer.Exit(2)
    _load_model_with_status()

    from rich.progress import Progress

    with Progress(console=_err_console(), transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"classifying {file.name}", total=len(rows))
        report = evaluate(rows, classify, progress=lambda done: progress.update(task, completed=done))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    _print_report(report, file, worst)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.command("classify")(classify_command)
    app.command("eval")(eval_command)
