"""Every exception the project defines is a `DoorstepError`, so callers can tell Doorstep's own refusals
(bad input, unknown order, refused URL, misconfiguration) from bugs, and nothing branches on message text."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "intents", "flows", "integrations")
# Framework types the web layer must subclass to be answered by FastAPI itself.
FRAMEWORK_BASES = {"HTTPException"}


def _exception_classes() -> list[tuple[str, str]]:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and (node.name.endswith(("Error", "Exception")) or any(
                        getattr(base, "id", getattr(base, "attr", "")) in {"Exception", "ValueError", "RuntimeError",
                                                                            "KeyError", "OSError"}
                        for base in node.bases)):
                    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                    found.append((module, node.name))
    return found


def test_every_project_exception_is_a_doorstep_error() -> None:
    from intents.errors import DoorstepError

    classes = _exception_classes()
    assert ("bot.core.phones", "InvalidPhone") in classes and ("flows.proactive", "NotApplicable") in classes
    outside = []
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not issubclass(cls, DoorstepError) and not {b.__name__ for b in cls.__mro__} & FRAMEWORK_BASES:
            outside.append(f"{module}.{name}")
    assert not outside, f"exceptions outside the DoorstepError hierarchy: {outside}"
