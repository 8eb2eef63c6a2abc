"""What every command that opens the service does first: build it (configuration mistakes end
with a clear message and exit code 2, never a traceback), set up logging, refuse URLs that can
never work. Imports nothing heavy at module level.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from bot.service import Service


def load_service(migrate: bool = True) -> Service:
    """The service every command uses; configuration mistakes end with a clear message, not a traceback."""
    from pydantic import ValidationError

    from bot.core.shopconfig import ConfigError
    from bot.service import Service

    try:
        return Service.create(migrate=migrate)
    except ConfigError as exc:
        typer.secho(f"Configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors())
        typer.secho(f"Invalid settings: {problems}", fg="red", err=True)
        raise typer.Exit(2) from None


def setup_logging(settings: Settings) -> None:
    """One line per record (DOORSTEP_LOG_FORMAT), third-party request logging quiet, secrets masked (bot/core/logs.py)."""
    from bot.core.logs import setup_logging as setup

    setup(settings.log_level, settings.log_format, access_log=settings.access_log)


def refuse_unsafe_urls(settings: Settings) -> None:
    """Exit before serving when an operator URL can never work (scheme, refused address).

    Otherwise, a refused logistics webhook URL fails every delivery while customers
    are told the courier knows. A host that does not resolve yet is only a warning.
    """
    from bot.core.urlguard import check_operator_urls

    log = logging.getLogger("bot.config")
    checks = check_operator_urls(settings)
    for check in checks:
        if not check.ok and not check.fatal:
            log.warning("%s: %s; deliveries there are retried", check.setting, check.problem)
    fatal = [c for c in checks if c.fatal]
    for check in fatal:
        log.error("%s %s", check.setting, check.problem)
        typer.secho(f"Refusing to start: {check.setting} {check.problem}.", fg="red", err=True)
    if fatal:
        typer.secho("Fix the setting (see `doorstep config check`), then start again.", fg="red", err=True)
        raise typer.Exit(2)
