"""Every YAML conversation in this folder, through the real pipeline, on SQLite and PostgreSQL.

The clock is frozen per file (`now:`; `after:` moves it), orders are created
with the API's domain functions, and each turn checks intent, reply pattern,
order fields, logistics events and escalation (format: docs/conversations.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli.convtest import discover, load_file, run_conversation
from bot.core.settings import Settings

HERE = Path(__file__).parent
FILES = discover(HERE)


def test_there_are_at_least_forty_conversations() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_conversation(path: Path, settings: Settings) -> None:
    outcome = run_conversation(path, settings.database_url, spec=load_file(path))
    report = [f"{path.name}: {outcome.error}"] if outcome.error else []
    for i, turn in enumerate(outcome.turns, start=1):
        for problem in turn.problems:
            report.append(f"turn {i} ({turn.say!r}): {problem}")
    assert outcome.passed, "\n".join(report)
