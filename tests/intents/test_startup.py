"""Start-up cost guards: the CLI module and the inference path stay free of heavy imports."""

from __future__ import annotations

import subprocess
import sys

from intents import classify


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_cli_module_imports_nothing_heavy() -> None:
    loaded = _modules_after("import bot.cli.nlu")
    assert not loaded & {"sklearn", "numpy", "scipy", "dateparser", "openai", "torch"}


def test_inference_needs_neither_scikit_learn_nor_scipy() -> None:
    classify("warm the cache")  # trains in this process if needed, so the child only loads
    loaded = _modules_after("from intents import classify\nclassify('where is my order')")
    assert not loaded & {"sklearn", "scipy", "openai", "torch"}
