"""Fixtures of the handoff suite's browser tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run `make browser-deps` (apt-get install -y chromium)", pytrace=False)
    return path
