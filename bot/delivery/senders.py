"""The sender registry: outbox kind ("message:sms", "webhook", ...) -> factory `(settings) -> Sender`.

`bot.wiring.install()` fills it with the integrations' factories (static imports, one line per channel);
a `Dispatcher` builds each sender on first use, so a process that never sends on a channel never
connects to its provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bot.core.channels import Receipt, Sender
from bot.core.settings import Settings


class RowSender(Protocol):
    """Sends an outbox row that is not a customer message (a logistics webhook, a Chatwoot mirror, an agent
    alert): it gets the claimed row itself."""

    async def send(self, claimed: Any) -> Receipt: ...


SenderFactory = Callable[[Settings], Sender | RowSender]

_FACTORIES: dict[str, SenderFactory] = {}


def register(factories: Mapping[str, SenderFactory]) -> None:
    """Add or replace factories (idempotent: the same mapping twice changes nothing)."""
    _FACTORIES.update(factories)


def factory_for(key: str) -> SenderFactory | None:
    return _FACTORIES.get(key)


def registered() -> dict[str, SenderFactory]:
    return dict(_FACTORIES)
