"""Waking the dispatchers of other processes: PostgreSQL LISTEN/NOTIFY, polling as the fallback.

After new outbox rows commit, `announce(db)` sends `NOTIFY doorstep_outbox`
(one autocommit statement on a connection kept for it, `Database.notify`, its
payload naming the process, whose own dispatchers were woken in-process and
ignore it; nothing on SQLite, whose dispatchers share one machine and poll).
A dispatcher on PostgreSQL keeps one connection of its own that LISTENs on
that channel and wakes at each notification (`listen`), so a `doorstep
worker` picks up a reply a `serve` process committed within milliseconds
instead of at its next poll.

Polling stays: rows that fall due later (retries, schedules) are found by it,
and it is the whole mechanism when LISTEN is unavailable. The listening
connection is opened again with backoff when it fails; while it is down the
dispatcher polls. `DOORSTEP_LISTEN_NOTIFY=false` turns listening off: PgBouncer
in transaction mode hands each transaction to any server connection, so a
LISTEN there never hears anything (NOTIFY through it still works, and is still sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets

from bot.core.db import Database
from bot.core.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "doorstep_outbox"
RETRY_CAP_SECONDS = 30.0
_ORIGIN = secrets.token_hex(8)  # this process's notifications: its own dispatchers were woken in-process


def _origin() -> str:
    """The payload naming this process (a forked child is another process: its pid is part of it)."""
    return f"{os.getpid()}:{_ORIGIN}"


def announce(db: Database) -> None:
    """Tell the other processes' dispatchers that new rows are committed (PostgreSQL; best effort)."""
    if not db.is_postgres:
        return
    import psycopg

    try:
        db.notify(CHANNEL, _origin())
    except psycopg.Error as exc:  # they poll anyway
        log.warning("NOTIFY %s failed: %s", CHANNEL, exc.__class__.__name__)


def listen(db: Database, settings: Settings, wake: asyncio.Event) -> asyncio.Task[None] | None:
    """Start listening for `announce` (PostgreSQL, unless DOORSTEP_LISTEN_NOTIFY=false); sets `wake`."""
    if not db.is_postgres or not settings.listen_notify:
        return None
    return asyncio.get_running_loop().create_task(_listen(db, wake), name="doorstep-listen")


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _listen(db: Database, wake: asyncio.Event) -> None:
    import psycopg

    conninfo = db.conninfo
    delay = 1.0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                log.info("listening for new outbox rows (%s)", CHANNEL)
                delay = 1.0
                wake.set()  # rows committed while we were not listening
                own = _origin()
                async for notification in conn.notifies():
                    # Our own announcement woke this process's dispatchers already (`dispatcher.notify`);
                    # heard again here, it made each of them claim a second time for nothing.
                    if notification.payload != own:
                        wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN %s failed (%s); polling, trying again in %.0f s", CHANNEL,
                        exc.__class__.__name__, delay)
        await asyncio.sleep(delay)
        delay = min(RETRY_CAP_SECONDS, delay * 2)
