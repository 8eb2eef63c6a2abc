"""Counting instructions instead of timing: a benchmark reruns itself under valgrind's callgrind with
counting switched off, switches it on around the measured work only, and reads the count of each
dump. A count does not move with the machine's load, so two versions of the code compare on a shared
or noisy machine; it leaves out the kernel (socket calls) and other processes (the database server).

    if args.instructions and UNDER_CALLGRIND not in os.environ:
        sys.exit(rerun_under_callgrind())
    ...
    with counting() as counted:
        measured_work()
    instructions = counted.total
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

UNDER_CALLGRIND = "DOORSTEP_BENCH_CALLGRIND_OUT"  # set when the script runs under callgrind: its dump file
_dumps = itertools.count(1)  # callgrind numbers its dumps in this process: out.1, out.2, …


def _control(command: str) -> None:
    """`callgrind_control <command>` for this process (waits until callgrind has done it)."""
    subprocess.run(["callgrind_control", command, str(os.getpid())], check=True, capture_output=True)


def _dumped(number: int) -> int:
    """The instruction count of callgrind's dump number `number` (counts since the previous dump)."""
    out = os.environ[UNDER_CALLGRIND]
    totals = [line for line in Path(f"{out}.{number}").read_text().splitlines() if line.startswith("totals:")]
    if not totals:
        raise RuntimeError(f"no instruction count in {out}.{number}")
    return int(totals[-1].split()[1])


@dataclass
class Counted:
    total: int = 0


@contextmanager
def counting() -> Iterator[Counted]:
    """Count the instructions of the block (every thread of this process); `.total` once it ends."""
    counted = Counted()
    _control("--instr=on")
    try:
        yield counted
    finally:
        _control("--instr=off")
        _control("--dump")
    counted.total = _dumped(next(_dumps))


def rerun_under_callgrind() -> int:
    """Run this script again, with the same arguments, under callgrind (counting switched off at start)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/callgrind.out"
        env = {**os.environ, UNDER_CALLGRIND: out, "PYTHONHASHSEED": "0"}
        return subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                               "--quiet", sys.executable, *sys.argv], env=env, check=False).returncode
