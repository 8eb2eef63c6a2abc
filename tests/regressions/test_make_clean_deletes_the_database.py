"""`make clean` deleted doorstep.db (every order, conversation and the API key). It keeps
it now; deleting the database is the explicitly named `make reset-db`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_keeps_the_database_and_reset_db_deletes_it(tmp_path: Path) -> None:
    for name in ("doorstep.db", "doorstep.db-wal", "doorstep.db-shm"):
        (tmp_path / name).write_text("data", encoding="utf-8")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".pytest_cache").mkdir()

    subprocess.run(["make", "-f", str(MAKEFILE), "clean"], cwd=tmp_path, check=True, capture_output=True)
    assert not (tmp_path / ".venv").exists() and not (tmp_path / ".pytest_cache").exists()
    assert (tmp_path / "doorstep.db").read_text(encoding="utf-8") == "data"
    assert (tmp_path / "doorstep.db-wal").exists()

    reset = subprocess.run(["make", "-f", str(MAKEFILE), "reset-db"], cwd=tmp_path, check=True,
                           capture_output=True, text=True)
    assert not any(tmp_path.glob("doorstep.db*"))
    assert "Deleted" in reset.stdout
