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


def _reads_the_text_of(node: ast.AST, name: str) -> bool:
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and getattr(sub.func, "id", "") in {"str", "repr"} and sub.args
                and isinstance(sub.args[0], ast.Name) and sub.args[0].id == name):
            return True
        if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == name
                and sub.attr in {"reason", "args"}):
            return True
    return False


def test_nothing_branches_on_an_errors_text() -> None:
    """`except X as exc: if "opted out" in str(exc)` breaks when a message is reworded: branch on a subclass."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for handler in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(handler, ast.ExceptHandler) or not handler.name:
                    continue
                for statement in handler.body:
                    for node in ast.walk(statement):
                        if isinstance(node, ast.Compare) and any(
                                _reads_the_text_of(operand, handler.name) for operand in (node.left, *node.comparators)):
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found
