"""`doorstep classify` and `doorstep eval` through typer's runner (the real commands, registered on an app)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from bot.cli import nlu as cli_nlu

app = typer.Typer()
cli_nlu.register(app)
runner = CliRunner()


def test_classify_json_contract() -> None:
    result = runner.invoke(
        app,
        [
            "classify",
            "deliver it on 28th after 6pm",
            "--json",
            "--now",
            "2026-11-18T10:00:00+05:30",
            "--timezone",
            "Asia/Kolkata",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"intent", "confidence", "entities", "language"} <= set(data)
    assert data["intent"] == "reschedule"
    assert {"type": "date", "value": "2026-11-28"}.items() <= data["entities"][0].items()
    assert any(e["type"] == "time_window" and e["value"] == "18:00-21:00" for e in data["entities"])


def test_classify_with_expecting() -> None:
    result = runner.invoke(app, ["classify", "haan ji", "--json", "--expecting", "yes_no"])
    assert json.loads(result.stdout)["intent"] == "affirm"
    bad = runner.invoke(app, ["classify", "x", "--expecting", "maybe"])
    assert bad.exit_code != 0


def test_classify_human_output() -> None:
    result = runner.invoke(app, ["classify", "flat 4B near the temple"])
    assert result.exit_code == 0
    assert "flat_number" in result.stdout and "change_address" in result.stdout


def test_eval_json_and_tables(tmp_path: Path) -> None:
    csv_file = tmp_path / "mini.csv"
    csv_file.write_text(
        "text,intent\nwhere is my parcel,wismo\ncancel it please,cancel_order\nhello there,greet\n"
        "tell me a joke,out_of_scope\nmera order kab aayega,wismo\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["eval", str(csv_file), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"accuracy", "macro_f1", "n", "per_intent"}
    assert data["n"] == 5
    assert set(data["per_intent"]["wismo"]) == {"precision", "recall", "f1", "support"}
    tables = runner.invoke(app, ["eval", str(csv_file)])
    assert "Confusion" in tables.stdout and "Per intent" in tables.stdout


def test_eval_rejects_bad_files(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("message,label\nhi,greet\n", encoding="utf-8")
    assert runner.invoke(app, ["eval", str(wrong)]).exit_code == 2
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,intent\nhi,salutation\n", encoding="utf-8")
    assert runner.invoke(app, ["eval", str(unknown)]).exit_code == 2
