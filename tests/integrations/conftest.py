"""Fixtures of the integrations tests: services whose database engines are closed after
each test, so the shared PostgreSQL never runs out of connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.core.settings import Settings
from bot.service import Service


@pytest.fixture
def make_service() -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(settings: Settings, **kwargs: Any) -> Service:
        service = Service.create(settings, **kwargs)
        made.append(service)
        return service

    yield make
    for service in made:
        service.db.dispose()
