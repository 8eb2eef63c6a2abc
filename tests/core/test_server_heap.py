"""`doorstep serve` freezes its startup heap once the intent model is ready, so the garbage
collector's full collections no longer scan the model and every module on each pass (≈ 100 ms
each, pausing every request in flight), and collects its young objects less often (a batch of messages
allocates hundreds of thousands, nearly all freed at once); an app built without asking for it
changes neither."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bot.app import GC_THRESHOLD, create_app
from bot.core.settings import Settings
from bot.service import Service


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test session collects as before
    gc.set_threshold(*threshold)


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the intent model never became ready"
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_freezes_the_heap_once_the_model_is_ready(settings: Settings, unfrozen: None) -> None:
    with TestClient(create_app(service=Service.create(settings), freeze_heap=True)) as client:
        _ready(client)
        deadline = time.monotonic() + 5  # the freeze runs on the event loop right after the model loads
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.get_freeze_count() > 10_000  # modules, settings and the model: the long-lived heap
        assert gc.get_threshold() == GC_THRESHOLD and GC_THRESHOLD[0] >= 10_000
        started = time.perf_counter()
        gc.collect()
        assert time.perf_counter() - started < 0.05  # a full collection no longer walks the model


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_app_built_for_a_library_user_freezes_nothing(settings: Settings, unfrozen: None) -> None:
    with TestClient(create_app(service=Service.create(settings))) as client:
        _ready(client)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold()[0] < GC_THRESHOLD[0]
