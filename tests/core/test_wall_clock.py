"""Every timestamp comes from the runtime clock: no wall-clock read outside the clock modules.

A direct `datetime.now()` somewhere puts a second, real timeline into the data
(an order `created_at` from the wall clock, its messages from the service's
clock), which breaks message logs and time-travel tests on some dates only.
This check reads the source, so it fails on the line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "intents", "flows", "integrations", "bench")
CLOCK_MODULES = {Path("bot/core/clock.py"), Path("intents/clock.py")}

# (object, attribute) calls that read the wall clock. time.monotonic/perf_counter measure
# durations, not timestamps, and stay allowed.
WALL_CLOCK_CALLS = {
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "time_ns"), ("time", "localtime"), ("time", "gmtime"), ("time", "ctime"),
}
# The clock modules' own functions may be *referenced* (a default clock) but not called elsewhere.
CLOCK_FUNCTIONS = {"system_clock", "wall_now", "utcnow"}


def _dotted(node: ast.expr) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute):
        owner = node.value
        if isinstance(owner, ast.Name):
            return owner.id, node.attr
        if isinstance(owner, ast.Attribute):  # datetime.datetime.now
            return owner.attr, node.attr
    return None


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if dotted in WALL_CLOCK_CALLS:
            found.append((node.lineno, ".".join(dotted)))
        elif isinstance(node.func, ast.Name) and node.func.id in CLOCK_FUNCTIONS:
            found.append((node.lineno, node.func.id))
        elif dotted and dotted[1] in CLOCK_FUNCTIONS:
            found.append((node.lineno, ".".join(dotted)))
    return found


def test_no_wall_clock_reads_outside_the_clock_modules() -> None:
    offenders: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in CLOCK_MODULES or "migrations" in relative.parts:
                continue
            for line, call in wall_clock_reads(path.read_text(encoding="utf-8")):
                offenders.append(f"{relative}:{line}: {call}()")
    assert not offenders, "wall-clock reads outside the clock modules (take the runtime clock):\n" + "\n".join(offenders)


def test_the_check_sees_each_form_of_wall_clock_read() -> None:
    source = """
import time, datetime as dt
from datetime import datetime, date
a = datetime.now(UTC)
b = dt.datetime.utcnow()
c = date.today()
d = time.time()
e = system_clock()
f = clock.system_clock()
g = time.monotonic()
h = runtime.now()
"""
    assert [call for _, call in wall_clock_reads(source)] == [
        "datetime.now", "datetime.utcnow", "date.today", "time.time", "system_clock", "clock.system_clock"]
